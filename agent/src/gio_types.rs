//! The two GIO functions the `glib` crate calls, answered without loading
//! GIO when nothing else has.
//!
//! `glib::Object::new` (every element we make) asks whether the type
//! implements `GInitable` or `GAsyncInitable`, interfaces GIO defines. That
//! one reference made the agent load libgio and, through it, libmount,
//! libblkid and libselinux: 0.95 MB resident that a GStreamer pipeline does
//! not otherwise need (a bare `gst-launch-1.0` of the same pipeline loads
//! none of them). Defined here, the linker resolves glib's calls to these
//! and, with `--as-needed`, leaves libgio out.
//!
//! While GIO is not loaded no type can implement its interfaces, so the
//! answer is `G_TYPE_INVALID` and glib's check is false, as it would be.
//! Once something has loaded GIO (an RTSP or HTTP source plugin links it),
//! the calls go to GIO's own functions. The definitions are not exported,
//! so libraries loaded later bind to GIO's, never to these.

use std::ffi::{c_char, c_int, c_void, CStr};

/// `GType`.
type GType = usize;

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

const RTLD_LAZY: c_int = 0x1;
const RTLD_NOLOAD: c_int = 0x4;

/// GIO's `name()` if GIO is loaded, else `G_TYPE_INVALID` (0).
fn gio_type(name: &CStr) -> GType {
    // SAFETY: RTLD_NOLOAD only looks up an already loaded library; the
    // handle is valid for the process's lifetime once returned (we never
    // close it, so GIO stays loaded, as it would anyway).
    let lib = unsafe { dlopen(c"libgio-2.0.so.0".as_ptr(), RTLD_LAZY | RTLD_NOLOAD) };
    if lib.is_null() {
        return 0;
    }
    // SAFETY: `name` is one of GIO's `GType (void)` type getters.
    unsafe {
        let f = dlsym(lib, name.as_ptr());
        if f.is_null() {
            return 0;
        }
        let f: extern "C" fn() -> GType = std::mem::transmute(f);
        f()
    }
}

/// See the module docs.
#[unsafe(no_mangle)]
pub extern "C" fn g_initable_get_type() -> GType {
    gio_type(c"g_initable_get_type")
}

/// See the module docs.
#[unsafe(no_mangle)]
pub extern "C" fn g_async_initable_get_type() -> GType {
    gio_type(c"g_async_initable_get_type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_invalid_without_gio_and_gios_types_once_it_is_loaded() {
        // SAFETY: only looks the library up.
        let loaded = !unsafe { dlopen(c"libgio-2.0.so.0".as_ptr(), RTLD_LAZY | RTLD_NOLOAD) }.is_null();
        assert_eq!(g_initable_get_type() == 0, !loaded);
        // SAFETY: loading a system library, kept loaded.
        let lib = unsafe { dlopen(c"libgio-2.0.so.0".as_ptr(), RTLD_LAZY) };
        assert!(!lib.is_null(), "libgio-2.0.so.0 comes with GStreamer");
        // SAFETY: GIO's own getter; g_type_name returns a static string.
        let name = unsafe {
            let f: extern "C" fn() -> GType = std::mem::transmute(dlsym(lib, c"g_initable_get_type".as_ptr()));
            assert_eq!(g_initable_get_type(), f());
            CStr::from_ptr(g_type_name(f()))
        };
        assert_eq!(name.to_str().unwrap(), "GInitable");
        assert_ne!(g_async_initable_get_type(), 0);
    }

    unsafe extern "C" {
        fn g_type_name(t: GType) -> *const c_char;
    }
}
