//! Fetches the web UI's one third-party file, hls.js, from npm at build
//! time, so that it is pinned by `web/package-lock.json` (with its integrity
//! hash) instead of being committed as a minified blob.
//!
//! `npm ci --omit=dev` runs in `web/` only when
//! `web/node_modules/hls.js/dist/hls.min.js` is missing, so ordinary builds
//! never touch the network; the crate then embeds the file with
//! `include_bytes!`. A changed lock file re-runs this script and reinstalls.

use std::path::Path;
use std::process::Command;

const HLS: &str = "node_modules/hls.js/dist/hls.min.js";

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("web");
    println!("cargo::rerun-if-changed=web/package.json");
    println!("cargo::rerun-if-changed=web/package-lock.json");
    // A missing file counts as changed, so deleting node_modules re-runs
    // this script.
    println!("cargo::rerun-if-changed=web/{HLS}");

    let lock = web.join("package-lock.json");
    let hls = web.join(HLS);
    // Missing, or another version than the lock file pins (the pin moved).
    let stale = !hls.exists() || installed_version(&web) != locked_version(&lock);
    if !stale {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&web)
        .status();
    match status {
        Ok(s) if s.success() && hls.exists() => {}
        Ok(s) => panic!(
            "`npm ci --omit=dev` in {} failed ({s}) or did not produce {HLS}; \
             the web UI embeds hls.js from npm (needs network on the first build)",
            web.display()
        ),
        Err(e) => panic!(
            "cannot run npm ({e}): the web UI embeds hls.js from npm at build time; \
             install it with `apt-get install -y npm` (Debian/Ubuntu package `npm`)"
        ),
    }
}

/// The `version` of the installed hls.js, if any.
fn installed_version(web: &Path) -> Option<String> {
    let text = std::fs::read_to_string(web.join("node_modules/hls.js/package.json")).ok()?;
    first_version_after(&text, "")
}

/// The version `package-lock.json` pins for hls.js.
fn locked_version(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    first_version_after(&text, "\"node_modules/hls.js\"")
}

/// The first `"version": "…"` after `marker` (JSON read without a parser:
/// build scripts should not pull in dependencies for one field).
fn first_version_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let rest = &rest[rest.find("\"version\"")? + "\"version\"".len()..];
    let rest = &rest[rest.find('"')? + 1..];
    Some(rest[..rest.find('"')?].to_owned())
}
