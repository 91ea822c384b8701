//! `flushctl`: a command-line client of flushd's line protocol.
//!
//! Exit status: 0 OK, 64 BAD (invalid request), 77 DENY (not eligible),
//! 75 FAIL (the server failed), 69 cannot talk to the server.

use clap::{Parser, Subcommand};
use flush_bin::client::{default_address, LineClient};
use flush_proto::request::{Add, Purge, Refresh, SendFile, SendSite, Stats};
use flush_proto::{Request, Status};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for a server that cannot be reached (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "flushctl",
    version,
    about = "Talk to flushd over its line protocol"
)]
struct Args {
    /// Server address: unix:/path or host:port [default: $FLUSHD_SOCKET or
    /// unix:/var/spool/postfix/public/flush.line]
    #[arg(short = 's', long = "socket")]
    socket: Option<String>,
    /// Seconds to wait for a reply.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log QUEUEID as deferred for SITE.
    Add { site: String, queue_id: String },
    /// Deliver everything logged for SITE (like ETRN).
    SendSite { site: String },
    /// Deliver one deferred message.
    SendFile { queue_id: String },
    /// Deliver logs unread for fast_flush_refresh_time, remove stale empty ones.
    Refresh,
    /// Deliver every log now.
    Purge,
    /// Print every actor's counters.
    Stats,
}

fn status_exit(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Bad => 64,
        Status::Deny => 77,
        Status::Fail => 75,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let request = match args.command {
        Command::Add { site, queue_id } => Request::Add(Add::new(site, queue_id)),
        Command::SendSite { site } => Request::SendSite(SendSite::new(site)),
        Command::SendFile { queue_id } => Request::SendFile(SendFile::new(queue_id)),
        Command::Refresh => Request::Refresh(Refresh),
        Command::Purge => Request::Purge(Purge),
        Command::Stats => Request::Stats(Stats),
    };
    let address = args.socket.unwrap_or_else(default_address);
    let reply = LineClient::connect(&address, Duration::from_secs(args.timeout))
        .map_err(flush_proto::ProtoError::from)
        .and_then(|mut client| client.request(&request));
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("flushctl: {address}: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    match (reply.status, &request) {
        (Status::Ok, Request::Stats(_)) => {
            match serde_json::from_str::<serde_json::Value>(&reply.detail)
                .and_then(|v| serde_json::to_string_pretty(&v))
            {
                Ok(pretty) => println!("{pretty}"),
                Err(_) => println!("{}", reply.detail),
            }
        }
        (Status::Ok, _) if !reply.detail.is_empty() => println!("{}", reply.detail),
        (Status::Ok, _) => {}
        (status, _) => eprintln!("flushctl: {status}: {}", reply.detail),
    }
    ExitCode::from(status_exit(reply.status))
}
