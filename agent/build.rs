//! Links the agent with `link/hot-code.ld` and `link/cold-code.ld`: the code
//! recording runs packed together, ahead of the rest, and code it never runs
//! kept apart (see the scripts for why).
//!
//! `EDGE_AGENT_LINK=profile` links with `link/profile-text.ld` instead, for
//! `scripts/profile-hot-code.sh`, which regenerates `hot-code.ld`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-env-changed=EDGE_AGENT_LINK");
    let scripts: &[&str] = match std::env::var("EDGE_AGENT_LINK").as_deref() {
        Ok("profile") => &["profile-text.ld"],
        _ => &["hot-code.ld", "cold-code.ld"],
    };
    for name in scripts {
        let script = format!("{dir}/link/{name}");
        println!("cargo:rerun-if-changed={script}");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
    }
}
