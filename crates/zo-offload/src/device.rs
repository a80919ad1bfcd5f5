//! Device names and the backend's memory accounting.

use crate::runtime::OffloadError;
use burn::tensor::Device;

/// Parses a device name: `flex` (burn's CPU backend; a second store on the host, useful for
/// exact parity checks), `wgpu` (the best wgpu adapter: Vulkan / Metal / DX12; on a machine
/// without a GPU, Mesa's lavapipe), `cuda` or `cuda:N`.
///
/// # Errors
/// [`OffloadError::Device`] for an unknown name (with the accepted ones) or a backend this
/// build does not include (with the cargo feature that adds it).
pub fn parse_device(name: &str) -> Result<Device, OffloadError> {
    let bad = |msg: String| OffloadError::Device {
        name: name.into(),
        msg,
    };
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" | "vulkan" => {
            #[cfg(feature = "wgpu")]
            {
                Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            }
            #[cfg(not(feature = "wgpu"))]
            {
                Err(bad(
                    "this build has no wgpu backend: rebuild with `--features wgpu`".into(),
                ))
            }
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx: usize = match s.strip_prefix("cuda:") {
                None => 0,
                Some(i) => i
                    .parse()
                    .map_err(|_| bad(format!("`{i}` is not a device index (cuda:N)")))?,
            };
            #[cfg(feature = "cuda")]
            {
                Ok(Device::cuda(idx))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = idx;
                Err(bad(
                    "this build has no CUDA backend: rebuild with `--features cuda` on a \
                     machine with the CUDA toolkit (see README)"
                        .into(),
                ))
            }
        }
        _ => Err(bad("known devices: flex, wgpu, cuda, cuda:N".into())),
    }
}

/// The backend's own accounting of a device's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceMemory {
    /// Bytes of live allocations (excluding padding).
    pub bytes_in_use: u64,
    /// Bytes the allocator holds from the device (≥ in use: pages kept for reuse).
    pub bytes_reserved: u64,
}

/// What the backend of `device` reports, or `None` where it keeps no accounting (flex).
/// On wgpu and CUDA this waits for the device's queue.
pub fn device_memory(device: &Device) -> Option<DeviceMemory> {
    device.memory_pool_usage().map(|u| DeviceMemory {
        bytes_in_use: u.bytes_in_use,
        bytes_reserved: u.bytes_reserved,
    })
}
