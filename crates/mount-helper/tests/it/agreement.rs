//! The helper and the agent agree on UUIDs and the mount root.

use proptest::prelude::*;

/// The helper accepts `s` exactly when `privileged::FsUuid` accepts it and leaves it unchanged
/// (the agent only ever passes normalized UUIDs, and the sudoers rule allows only those).
fn agree(s: &str) -> Result<(), TestCaseError> {
    let agent = privileged::FsUuid::parse(s)
        .ok()
        .filter(|u| u.as_str() == s);
    let helper = mount_helper::FsUuid::parse(s).ok();
    prop_assert_eq!(
        agent.map(|u| u.as_str().to_owned()),
        helper.map(|u| u.as_str().to_owned()),
        "{:?}",
        s
    );
    Ok(())
}

proptest! {
    #[test]
    fn uuid_shapes_agree_on_near_misses(s in "[0-9a-fA-Fg -]{0,40}") {
        agree(&s)?;
    }

    #[test]
    fn uuid_shapes_agree_on_well_formed(
        long in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        short in "[0-9a-fA-F]{4}-[0-9a-fA-F]{4}",
    ) {
        agree(&long)?;
        agree(&short)?;
        agree(&long.to_ascii_lowercase())?;
        agree(&short.to_ascii_uppercase())?;
    }
}

#[test]
fn mount_root_is_the_agents() {
    assert_eq!(
        mount_helper::Paths::system().mount_root,
        std::path::Path::new(privileged::MOUNT_ROOT)
    );
}
