//! The page's own files besides the page: its WebAssembly (`/duet.wasm`), its service
//! worker (`/sw.js`), its web app manifest and icon. They are served from the binary at
//! fixed paths that no pipe can take, each with a policy that lets it run nothing else.
//! Two paths belong to the service worker and reach the server only without one: the
//! downloads it streams (`/.duet-download/…`) and the files another app shares to the
//! installed page (`POST /share`, the manifest's share target).

use super::answer::Answered;
use super::head::Head;
use super::{page, respond, write_head};
use crate::server::hub::Hub;
use crate::server::notice::tell_within;
use crate::socket::Socket;

/// The manifest: installable (a name, an icon, a start page, standalone) and, on Android,
/// a target in the system's Share menu for files.
const MANIFEST: &str = include_str!("manifest.webmanifest");
/// The icon (SVG, so one file serves every size).
const ICON: &str = include_str!("icon.svg");

/// One of the page's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    Wasm,
    Worker,
    Manifest,
    Icon,
}

impl Asset {
    /// The file at `path`, if it is one.
    pub fn of(path: &str) -> Option<Asset> {
        match path {
            "/duet.wasm" => Some(Asset::Wasm),
            "/sw.js" => Some(Asset::Worker),
            "/manifest.webmanifest" => Some(Asset::Manifest),
            "/icon.svg" => Some(Asset::Icon),
            _ => None,
        }
    }

    fn body(self) -> (&'static [u8], &'static str) {
        match self {
            Asset::Wasm => (page::WASM, "application/wasm"),
            Asset::Worker => (page::SERVICE_WORKER.as_bytes(), "text/javascript"),
            Asset::Manifest => (MANIFEST.as_bytes(), "application/manifest+json"),
            Asset::Icon => (ICON.as_bytes(), "image/svg+xml"),
        }
    }
}

/// Serves `what` (`GET` or `HEAD`).
pub async fn serve(hub: &Hub, stream: &Socket, head: &Head, what: Asset) -> Answered {
    let (bytes, kind) = what.body();
    let headers = [
        ("Content-Type", kind),
        // An SVG opened by itself runs no script; the worker fetches nothing itself.
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache"),
    ];
    write_head(hub, stream, 200, &headers, Some(bytes.len() as u64)).await;
    if head.method != "HEAD" {
        tell_within(stream, bytes, hub.config.limits.handshake_timeout).await;
    }
    Answered::plain(200, "asset")
}

/// A download of the service worker's that reached the server (no worker ran).
pub async fn not_here(hub: &Hub, stream: &Socket) -> Answered {
    let why = "downloads are served by the page's service worker";
    respond(hub, stream, 404, why, &[]).await;
    Answered::plain(404, why)
}

/// `POST /share` without the service worker (which takes shared files itself): back to the
/// page, whose Files tab sends files.
pub async fn share(hub: &Hub, stream: &Socket) -> Answered {
    let why = "shared files are taken by the installed page; choose them in its Files tab";
    respond(hub, stream, 303, why, &[("Location", "/#files")]).await;
    Answered::plain(303, why)
}
