//! `etl notify test`: a message to each channel of the target's
//! `notify:` (or one), to see that the webhook, the relay and the
//! credentials work before a night depends on them.

use clap::Subcommand;

use etl::diagnostic::{Code, Diagnostic};
use etl::notify;

use super::build::say_deliveries;
use super::{Global, Output, invocation_id};

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send a test message to every channel that is on, whatever it is
    /// told of; exit 1 if one does not take it.
    Test {
        /// Only the channel with this name.
        #[arg(long)]
        channel: Option<String>,
    },
}

pub async fn run(global: &Global, command: &NotifyCommand, out: &Output) -> u8 {
    let NotifyCommand::Test { channel } = command;
    let started = chrono::Utc::now();
    // The project file and its target are all it needs: a model that
    // does not render is no reason not to test the channels.
    let Some((project, target)) = etl::project::load_target(&global.project_dir, &global.load_options()) else {
        // Loading the whole project says what is wrong with the file.
        return match global.prepare(out, &invocation_id()) {
            Err(code) => code,
            Ok(_) => 2,
        };
    };
    let root = std::path::absolute(&global.project_dir).unwrap_or_else(|_| global.project_dir.clone());
    let Some(notify) = &target.notify else {
        out.fatal(
            &[
                Diagnostic::error(Code::Notify, format!("target `{}` has no `notify:`", target.name))
                    .with_help("see docs/notify.md"),
            ],
            Some(&root),
        );
        return 2;
    };
    if notify.channels.is_empty() {
        let off = if notify.off.is_empty() {
            String::new()
        } else {
            format!(" ({} rendered empty: off)", notify.off.join(", "))
        };
        out.fatal(
            &[Diagnostic::error(
                Code::Notify,
                format!("target `{}` has no channel on{off}", target.name),
            )],
            Some(&root),
        );
        return 2;
    }
    let invocation = invocation_id();
    let lake = target.lake.to_string();
    let context = notify::Context {
        project: &project,
        target: &target.name,
        command: "notify test",
        invocation_id: &invocation,
        lake: &lake,
        root: &root,
        started_at: started,
        link: notify.link.as_deref(),
    };
    let report = notify::Report::test(&context);
    match notify::test(notify, &report, channel.as_deref()).await {
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            2
        }
        Ok(deliveries) => {
            say_deliveries(out, &root, &deliveries, false);
            if deliveries.iter().any(|d| d.error.is_some()) {
                1
            } else {
                0
            }
        }
    }
}
