//! Gives the cdylib the soname of the real driver, so that a program linked
//! against it (or a loader looking it up) sees `libcuda.so.1`.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}
