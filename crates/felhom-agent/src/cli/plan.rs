//! `felhom-agent plan --config FILE`: the reconcile plan against the current desired state,
//! each step `benign`, `needs-signature` or `refused`, changing nothing.
//!
//! The desired state is the one in `desired.file` if it would be accepted (newer generation),
//! else the last accepted one from the journal (opened read-only; nothing is written, nothing
//! adopted: guests a newer file would adopt are shown as managed-if-accepted). Every desired
//! guest's config is read once (this is a one-shot command, not the steady-state loop).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use clap::Args;
use reconcile::{Acceptance, Class, ClassifiedOp, Note, Proxmox};

use crate::pve_port::PveProxmox;

/// Arguments of `plan` (the file comes from the global `--config`).
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `plan`.
pub fn execute(config_path: Option<&Path>, args: PlanArgs) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    crate::proxmox::install_crypto_provider();
    let journal = match journal::Journal::open_read_only(&config.state_dir) {
        Ok(j) => Some(j),
        Err(journal::JournalError::Missing { .. }) => None,
        Err(e) => return Err(e).context("cannot open the journal"),
    };
    let stored = match &journal {
        Some(j) => j.latest_desired_state()?,
        None => None,
    };
    let records: BTreeMap<u32, journal::GuestRecord> = match &journal {
        Some(j) => j.guests()?.into_iter().map(|r| (r.vmid, r)).collect(),
        None => BTreeMap::new(),
    };
    let stored = stored
        .map(|r| reconcile::parse_desired(r.body.as_bytes()))
        .transpose()
        .context("the stored desired state does not parse")?;
    let mut lines_head = Vec::new();
    let mut desired = stored.clone();
    if let Some(file) = config.desired.as_ref().map(|d| &d.file) {
        match std::fs::read(file) {
            Err(e) => lines_head.push(format!("desired file {}: unreadable ({e})", file.display())),
            Ok(bytes) => match reconcile::parse_desired(&bytes) {
                Err(e) => lines_head.push(format!("desired file rejected: {e}")),
                // The engine's own rule decides what the file would do.
                Ok(doc) => match reconcile::accept(stored.as_ref(), &doc) {
                    Acceptance::Older { current } => lines_head.push(format!(
                        "desired file generation {} ignored (older than {current})",
                        doc.generation
                    )),
                    Acceptance::Conflicting { .. } => lines_head.push(format!(
                        "desired file rejected: generation {} was accepted with different content",
                        doc.generation
                    )),
                    Acceptance::Same => {}
                    Acceptance::Newer => {
                        lines_head.push(format!(
                            "desired file generation {} would be accepted",
                            doc.generation
                        ));
                        // Accepting it adopts nobody (DESIGN.md §4.6): the records stay.
                        desired = Some(doc);
                    }
                },
            },
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let px = PveProxmox::new(
        crate::proxmox::client(&config.proxmox)?,
        crate::proxmox::token_user(&config.proxmox),
    );
    let (actual, configs) = runtime.block_on(async {
        let guests = px.guests().await.context("reading the node's guests")?;
        let actual = reconcile::actual::Actual {
            guests: guests.into_iter().map(|g| (g.vmid, g)).collect(),
        };
        let mut configs = BTreeMap::new();
        if let Some(d) = &desired {
            for (vmid, want) in &d.guests {
                if !want.config.is_empty() && actual.guests.contains_key(vmid) {
                    configs.insert(
                        *vmid,
                        px.guest_config(*vmid)
                            .await
                            .with_context(|| format!("reading guest {vmid}'s config"))?,
                    );
                }
            }
        }
        anyhow::Ok((actual, configs))
    })?;
    // The engine's own preview: the same plan, classes and verdicts it would act on.
    let preview = reconcile::preview(
        desired.as_ref(),
        &actual,
        &|v| configs.get(&v).cloned(),
        &records,
    );
    let mut steps = Vec::new();
    for ClassifiedOp { op, classes, .. } in &preview.ops {
        for (step, class) in op.steps.iter().zip(classes) {
            let why = match class {
                Class::NeedsSignature { action, target } => {
                    format!("{}; sign {action} for {target}", op.reason)
                }
                Class::Refused { reason } => reason.clone(),
                Class::Benign => op.reason.clone(),
            };
            steps.push((op.vmid, step.describe(), class.word(), why));
        }
    }
    let plan = preview;
    if args.json {
        let doc = serde_json::json!({
            "generation": desired.as_ref().map(|d| d.generation),
            "messages": lines_head,
            "steps": steps.iter().map(|(v, s, c, w)| serde_json::json!({"vmid": v, "step": s, "class": c, "reason": w})).collect::<Vec<_>>(),
            "notes": plan.notes.iter().map(note_text).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    match &desired {
        Some(d) => println!("desired state generation {}", d.generation),
        None => println!("no desired state"),
    }
    for line in &lines_head {
        println!("{line}");
    }
    if steps.is_empty() {
        println!("nothing to do");
    }
    for (vmid, step, class, why) in &steps {
        println!("{vmid}\t{step}\t{class}\t{why}");
    }
    for note in &plan.notes {
        println!("{}", note_text(note));
    }
    Ok(())
}

fn note_text(note: &Note) -> String {
    match note {
        Note::Unmanaged { vmid } => format!("{vmid}\tunmanaged\tnever touched"),
        Note::NeedsAdoption { vmid } => format!(
            "{vmid}\tadoption-needs-signature\tnamed in the desired state, not managed; sign guest.adopt for vmid:{vmid}"
        ),
        Note::Missing { vmid } => {
            format!("{vmid}\tmissing\tnot on this node (provisioning not supported yet)")
        }
        Note::Locked { vmid, lock } => format!("{vmid}\tlocked\t{lock}"),
        Note::OddStatus { vmid, status } => format!("{vmid}\twaiting\tstatus {status}"),
        Note::ConfigUnknown { vmid } => {
            format!("{vmid}\tconfig-unknown\tcould not read its config")
        }
    }
}
