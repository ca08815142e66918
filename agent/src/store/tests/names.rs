//! Stream names become directory names: anything that could escape the
//! store, or is not a KVS stream name, is refused with the value quoted.

use super::*;

#[test]
fn bad_stream_names_are_refused_naming_the_value() {
    // The store one level down, so an escape would land in our own
    // directory (a shared /tmp may hold an `x` of somebody else's).
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("store");
    let store = Store::open(config(&dir), test_clock()).unwrap();
    let long = "x".repeat(257);
    for (name, why) in [
        ("../x", "path separator"),
        ("..", "only dots"),
        (".", "only dots"),
        ("", "empty"),
        (long.as_str(), "longer than 256"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("front door", "outside"),
        ("caméra", "outside"),
        ("x\0", "outside"),
    ] {
        let err = store.open_stream(name, &tracks(1), false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::BadStreamName { .. }), "{name:?}: {msg}");
        assert!(msg.contains(&format!("{name:?}")), "{msg}");
        assert!(msg.contains(why), "{name:?}: {msg}");
    }
    // Nothing was created outside (or inside) the store for them.
    assert_eq!(std::fs::read_dir(dir.join("segments")).unwrap().count(), 0);
    assert!(!outer.path().join("x").exists());
    assert!(!dir.join("x").exists());
    for ok in ["front-door", "a.b_c-1", "...a", &"n".repeat(256)] {
        store.open_stream(ok, &tracks(1), false).unwrap();
    }
    assert_eq!(store.streams().unwrap().len(), 4);
    let err = store.cursor("nope", CursorFrom::Live).unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn track_lists_the_fragmenter_would_refuse_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    assert!(store
        .open_stream("a", &[], false)
        .unwrap_err()
        .to_string()
        .contains("0 tracks"));
    let mut t = tracks(2);
    t.swap(0, 1);
    let err = store.open_stream("a", &t, false).unwrap_err();
    assert!(err.to_string().contains("numbered 2"), "{err}");
}
