//! The runtime's basics: its error type, the guard that turns libtorch's
//! panics into errors, the lock on libtorch's global random generator, and
//! parsing the `device` and `dtype` params.

use std::path::PathBuf;
use std::sync::Mutex;
use tch::{Device, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "out of memory: {0}\n  hint: lower `batch_size` (raise `grad_accum` to keep the effective batch), `cutoff_len`, or use LoRA"
    )]
    OutOfMemory(String),
    #[error("libtorch: {0}")]
    Torch(String),
}

/// Run libtorch work, turning a panic inside `tch` into an error that says what
/// happened (out-of-memory gets its own variant and a hint).
pub fn guard<T>(f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    quiet_guarded_panics();
    let was = IN_GUARD.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(was));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            let first = torch_message(&message);
            if message.contains("out of memory")
                || message.contains("can't allocate memory")
                || message.contains("CUBLAS_STATUS_ALLOC_FAILED")
            {
                Err(ModelError::OutOfMemory(first))
            } else {
                Err(ModelError::Torch(first))
            }
        }
    }
}

/// Install, once, a panic hook that stays silent for panics [`guard`] catches:
/// libtorch's message with its C++ stack would otherwise be printed before the
/// clean error. Every other panic goes to the hook that was there before.
pub(crate) fn quiet_guarded_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARD.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
}

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Held by whatever draws from libtorch's global random generator (training's
/// dropout, random initialisation), so concurrent users cannot change each
/// other's draws and a seeded run stays reproducible.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The useful part of a libtorch panic: `tch` panics with the Debug form of its
/// error (`called `Result::unwrap()` on an `Err` value: Torch("...\nframe #0: ...")`),
/// whose C++ stack frames say nothing to a user.
pub(crate) fn torch_message(panic: &str) -> String {
    let text = panic.split_once("Torch(\"").map_or(panic, |(_, rest)| rest);
    let end = [
        text.find("\\nframe #"),
        text.find("\nframe #"),
        text.find("\\nException raised"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(text.len());
    let text = text[..end].trim_end_matches(['"', ')']);
    text.replace("\\n", " ").trim().to_string()
}

/// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
/// Whether `spec` names a device [`parse_device`] understands (available or not).
pub fn is_device_name(spec: &str) -> bool {
    matches!(spec, "auto" | "cpu" | "cuda" | "gpu")
        || spec
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok())
}

pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(ModelError::Invalid(
                    "device `cuda` requested but libtorch sees no CUDA device".into(),
                ))
            }
        }
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if (n as i64) < tch::Cuda::device_count() => Ok(Device::Cuda(n)),
            _ => Err(ModelError::Invalid(format!(
                "unknown or unavailable device `{other}` (auto, cpu, cuda, cuda:N)"
            ))),
        },
    }
}

/// `auto` (bf16 on GPU, f32 on CPU), `f32`, `bf16` or `f16`.
pub fn parse_kind(spec: &str, device: Device) -> Result<Kind, ModelError> {
    match spec {
        "auto" if device.is_cuda() => Ok(Kind::BFloat16),
        "auto" | "f32" | "float32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" => Ok(Kind::Half),
        other => Err(ModelError::Invalid(format!(
            "unknown dtype `{other}` (auto, f32, bf16, f16)"
        ))),
    }
}

thread_local! {
    /// Set while this thread runs inside [`guard`], whose caller reports the panic.
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
