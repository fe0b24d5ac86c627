// Bake libtorch's directory into the binary's RPATH when the `torch` feature is on:
// torch-sys passes `-rpath` only to its own C++ wrapper, so without this the binary
// fails to start with "libtorch_cpu.so: cannot open shared object file".
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
