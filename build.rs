// Bake libtorch's directory into the binary's RPATH when the `torch` feature is on:
// torch-sys passes `-rpath` only to its own C++ wrapper, so without this the binary
// fails to start with "libtorch_cpu.so: cannot open shared object file". The path is
// resolved through links (`.libtorch` is one), so an installed `tw` keeps working
// wherever the checkout goes.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let dir = std::fs::canonicalize(&dir)
            .map(|d| d.display().to_string())
            .unwrap_or(dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
