//! The UPID parser (`pve::Upid`'s `FromStr`, run on every task answer) never panics, `Display`
//! gives back exactly the text parsed, and the fields render (`Upid::new`, PVE's `%08X` form)
//! to a UPID that parses to the same fields.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(upid) = s.parse::<pve::Upid>() else {
        return;
    };
    assert_eq!(upid.to_string(), s);
    let again = pve::Upid::new(
        upid.node(),
        upid.pid(),
        upid.pstart(),
        upid.starttime(),
        upid.task_type(),
        upid.id(),
        upid.user(),
    )
    .expect("a parsed UPID's fields render to a UPID");
    assert_eq!(again.node(), upid.node());
    assert_eq!(again.pid(), upid.pid());
    assert_eq!(again.pstart(), upid.pstart());
    assert_eq!(again.starttime(), upid.starttime());
    assert_eq!(again.task_type(), upid.task_type());
    assert_eq!(again.id(), upid.id());
    assert_eq!(again.user(), upid.user());
    let json = serde_json::to_string(&upid).expect("a UPID serializes");
    assert_eq!(
        serde_json::from_str::<pve::Upid>(&json).expect("and parses back"),
        upid
    );
});
