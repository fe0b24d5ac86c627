//! What can go wrong with the sandbox itself (never a verdict on a program).

#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error("no usable Python interpreter: {0}")]
    NoPython(String),
    #[error("cannot start a sandbox worker: {0}")]
    Spawn(String),
    #[error("`{source_name}={value}` is not a sandbox policy (auto, require or none)")]
    Policy {
        value: String,
        source_name: &'static str,
    },
    #[error(
        "the sandbox is required (--sandbox require) but bubblewrap cannot run here: {why}\n  hint: {INSTALL_HINT}"
    )]
    Unavailable { why: String },
    #[error(
        "sandbox worker {worker} failed on {job} and again on a retry: {reason}\n  hint: this is the sandbox failing, not the program; `tw sandbox check` shows what this machine allows"
    )]
    Worker {
        worker: usize,
        job: String,
        reason: String,
    },
    #[error("sandbox: {0}")]
    Io(String),
}

impl From<std::io::Error> for SandboxError {
    fn from(e: std::io::Error) -> Self {
        SandboxError::Io(e.to_string())
    }
}

impl From<SandboxError> for crate::api::StageError {
    fn from(e: SandboxError) -> Self {
        crate::api::StageError::failed(e.to_string())
    }
}

/// Per-distribution instructions for installing bubblewrap, for errors and `tw sandbox check`.
pub const INSTALL_HINT: &str = "install bubblewrap: Debian/Ubuntu `sudo apt-get install bubblewrap`; \
Fedora/RHEL `sudo dnf install bubblewrap`; without root, build it from \
https://github.com/containers/bubblewrap into ~/.local and set TW_BWRAP (needs \
unprivileged user namespaces: `sysctl kernel.unprivileged_userns_clone` / \
`user.max_user_namespaces` > 0; on Ubuntu 24.04 also an AppArmor profile that allows them)";
