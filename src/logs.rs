//! Logs (`-v`, `LABCTL_LOG`) in the same voice as every other message: `warning: …`,
//! not tracing's default `WARN` column, and coloured only where colour can be seen.
//!
//! Lines go through `anstream`, as the printer's do, so a log redirected to a file or
//! a pipe (`2>err`, `2>&1 | less`) carries no escape codes, and `NO_COLOR` and
//! `CLICOLOR_FORCE` are honoured alike.

use std::fmt;

use owo_colors::OwoColorize;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Starts logging at the level `-v` asks for (or `LABCTL_LOG`'s filter).
pub fn init(verbose: u8) {
    let filter = match verbose {
        // The my-ip lookup's certificate failures are reported once, as the error.
        0 => "warn,aws_config=error,aws_smithy_runtime=error,rustls_platform_verifier=off",
        1 => "labctl=info,warn",
        2 => "labctl=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LABCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Styles are always written; anstream strips them where they cannot show.
        .with_ansi(true)
        .with_writer(anstream::stderr)
        .event_format(Lines {
            target: verbose >= 2,
        })
        .init();
}

/// One line per event: `severity: [target: ]message fields`.
struct Lines {
    /// Whether to name the module that logged (from `-vv` on).
    target: bool,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "{} ", "error:".red().bold())?,
            Level::WARN => write!(writer, "{} ", "warning:".yellow().bold())?,
            Level::INFO => write!(writer, "{} ", "info:".green())?,
            Level::DEBUG => write!(writer, "{} ", "debug:".blue())?,
            Level::TRACE => write!(writer, "{} ", "trace:".dimmed())?,
        }
        if self.target {
            write!(writer, "{} ", format_args!("{}:", meta.target()).dimmed())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
