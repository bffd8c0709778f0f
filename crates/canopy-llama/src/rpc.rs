//! llama.cpp's RPC backend: a target's layers on other machines, and the helper that serves them.
//!
//! A *helper* is a process on another machine running ggml's RPC server over one of its backend
//! devices ([`serve`], `canopy rpc-server`). This side connects to it ([`connect`]), which adds the
//! helper's devices to ggml's device list, and loads the target with some of its layers on those
//! devices ([`split_params`]): the first layers stay local, the last ones (output layer included)
//! live on the helpers, in proportion to free memory unless the caller says how many. The draft
//! always stays local ([`local_params`]).
//!
//! llama-cpp-2 has no binding for the RPC backend and `ggml-rpc.h` is not among llama-cpp-sys-2's
//! bindings, so its two entry points (`ggml_backend_rpc_add_server`, `ggml_backend_rpc_start_server`)
//! are looked up through ggml's backend registry (`ggml_backend_reg_by_name("RPC")` and
//! `ggml_backend_reg_get_proc_address`), as llama.cpp's own tools do. The backend is compiled in
//! by `GGML_RPC=ON` (see `.cargo/config.toml`).
//!
//! llama.cpp aborts the process when it cannot connect to a helper or when one dies mid-decode.
//! [`connect`] therefore greets every helper itself first (ggml's HELLO, with timeouts), so that an
//! unreachable, busy or incompatible helper is an error with a message instead of an abort. A helper
//! that dies later still aborts the worker; the supervisor then names the helper.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use canopy_worker::{Placement, RpcSplit};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_sys_2 as sys;

/// ggml's RPC wire protocol version spoken by the llama.cpp vendored in llama-cpp-sys-2 0.1.161
/// (`RPC_PROTO_MAJOR_VERSION`/`MINOR` in `ggml-rpc.h`); a helper must have the same major version
/// and a minor version no newer.
pub const RPC_PROTO_MAJOR: u8 = 7;
pub const RPC_PROTO_MINOR: u8 = 0;
/// `RPC_CMD_HELLO` (fixed at 14 across versions) and the size of its capability block.
const CMD_HELLO: u8 = 14;
const CONN_CAPS: usize = 24;

/// Time allowed to open a connection to a helper, and for its answer to the greeting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The port `canopy rpc-server` listens on by default (that of llama.cpp's `rpc-server`).
pub const DEFAULT_PORT: u16 = 50052;

/// Why helpers could not be used, or a helper could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("llama.cpp's RPC backend (libggml-rpc.so) was not found beside the program or in ../lib/canopy: reinstall Canopy")]
    NotBuilt,
    #[error("RPC helper {endpoint} is unreachable: {reason}; start `canopy rpc-server` there, or leave out --rpc")]
    Unreachable { endpoint: String, reason: String },
    #[error("RPC helper {endpoint} accepted the connection but did not answer within {secs} s; a helper serves one client at a time: is another Canopy using it?")]
    Busy { endpoint: String, secs: u64 },
    #[error("{endpoint} does not answer like an RPC helper ({reason}): is `canopy rpc-server` running there?")]
    NotAHelper { endpoint: String, reason: String },
    #[error("RPC helper {endpoint} speaks RPC protocol {major}.{minor}, this build speaks {RPC_PROTO_MAJOR}.{RPC_PROTO_MINOR}: run the same Canopy version on both machines")]
    Version {
        endpoint: String,
        major: u8,
        minor: u8,
    },
    #[error("RPC helper {endpoint} offers no device")]
    NoDevices { endpoint: String },
    #[error(
        "the target cannot be split over RPC helpers with placement {placement}: use cpu or gpu"
    )]
    Placement { placement: String },
    #[error("--rpc-layers with placement gpu: the split between local GPUs and helpers follows free memory; use placement cpu to choose the helpers' layer count")]
    LayersWithGpu,
    #[error("{requested} layers on the RPC helpers, but the target has {available} (output layer included): use 1..={available}")]
    Layers { requested: u32, available: u32 },
    #[error("the target's layer count is unknown ({0})")]
    UnknownLayers(String),
    #[error("too many devices for one model: {0}")]
    TooManyDevices(String),
    #[error("no backend device named {name:?}; devices here: {available}")]
    UnknownDevice { name: String, available: String },
    #[error("invalid address {0:?} to serve on: use host:port")]
    ServeAddress(String),
    #[error("cache directory {path} cannot be used: {reason}")]
    Cache { path: String, reason: String },
}

/// One backend device of this process, as ggml lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Index in ggml's device list.
    pub index: usize,
    /// `CPU`, `CUDA0`, … (`RPC0`, … for helpers' devices).
    pub name: String,
    pub description: String,
    /// Name of the backend that owns it (`CPU`, `CUDA`, `RPC`).
    pub backend: String,
    pub kind: DeviceKind,
    pub free_bytes: usize,
    pub total_bytes: usize,
}

/// What kind of device ggml says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Accelerator,
    Other,
}

/// The devices of this process (helpers' devices included once connected). Querying a helper's
/// memory is a round trip to it.
pub fn devices() -> Vec<Device> {
    // ggml's device list is a process-wide registry; indices below its count are valid and devices
    // are never removed.
    let count = dev_count();
    (0..count).map(|i| describe(i, dev(i))).collect()
}

/// The number of ggml devices, after loading the backends that provide them.
fn dev_count() -> usize {
    crate::backends::load();
    // SAFETY: a read of ggml's process-wide device registry.
    unsafe { sys::ggml_backend_dev_count() }
}

fn dev(index: usize) -> sys::ggml_backend_dev_t {
    // SAFETY: callers pass an index below `ggml_backend_dev_count()` (see `devices`).
    unsafe { sys::ggml_backend_dev_get(index) }
}

fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings owned by the device or registry, which live as
    // long as the process.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

fn describe(index: usize, device: sys::ggml_backend_dev_t) -> Device {
    // SAFETY: `device` is a live device of ggml's registry; the props struct is plain data that
    // `ggml_backend_dev_get_props` fills in completely.
    let props = unsafe {
        let mut props: sys::ggml_backend_dev_props = std::mem::zeroed();
        sys::ggml_backend_dev_get_props(device, &raw mut props);
        props
    };
    // SAFETY: as above; every device belongs to a registry that outlives it.
    let backend =
        text(unsafe { sys::ggml_backend_reg_name(sys::ggml_backend_dev_backend_reg(device)) });
    let kind = match props.type_ {
        sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
        sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
        sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
        sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accelerator,
        _ => DeviceKind::Other,
    };
    Device {
        index,
        name: text(props.name),
        description: text(props.description),
        backend,
        kind,
        free_bytes: props.memory_free,
        total_bytes: props.memory_total,
    }
}

/// Device indices of every helper connected in this process, by endpoint.
static CONNECTED: Mutex<Option<HashMap<String, Vec<usize>>>> = Mutex::new(None);

fn connected() -> std::sync::MutexGuard<'static, Option<HashMap<String, Vec<usize>>>> {
    CONNECTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether any helper was connected in this process (its devices are then in ggml's list, and a
/// load that should stay local must name its devices: see [`local_params`]).
pub fn any_connected() -> bool {
    connected().as_ref().is_some_and(|m| !m.is_empty())
}

/// The local GPUs (discrete, else integrated) that llama.cpp would pick by default: never a
/// helper's device.
pub fn local_gpus() -> Vec<usize> {
    let all = devices_without_querying_helpers();
    let pick = |kind| {
        all.iter()
            .filter(|(_, k, backend)| *k == kind && backend != "RPC")
            .map(|(i, _, _)| *i)
            .collect::<Vec<_>>()
    };
    let gpus = pick(DeviceKind::Gpu);
    if gpus.is_empty() {
        pick(DeviceKind::IntegratedGpu)
    } else {
        gpus
    }
}

/// (index, kind, backend name) of each device, without a round trip to any helper.
fn devices_without_querying_helpers() -> Vec<(usize, DeviceKind, String)> {
    let count = dev_count();
    (0..count)
        .map(|i| {
            let d = dev(i);
            // SAFETY: `d` is a live device; its type and registry name need no network.
            let (type_, backend) = unsafe {
                (
                    sys::ggml_backend_dev_type(d),
                    text(sys::ggml_backend_reg_name(
                        sys::ggml_backend_dev_backend_reg(d),
                    )),
                )
            };
            let kind = match type_ {
                sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
                sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accelerator,
                _ => DeviceKind::Other,
            };
            (i, kind, backend)
        })
        .collect()
}

/// Restricts `params` to this machine's devices. Needed once a helper is connected: llama.cpp's
/// default device choice would otherwise put any model (the draft included) on the helpers.
///
/// # Errors
/// [`RpcError::TooManyDevices`] when the machine has more GPUs than llama.cpp takes.
pub fn local_params(params: LlamaModelParams) -> Result<LlamaModelParams, RpcError> {
    if !any_connected() {
        return Ok(params);
    }
    params
        .with_devices(&local_gpus())
        .map_err(|e| RpcError::TooManyDevices(e.to_string()))
}

/// Connects to each helper (once per process) and returns its devices' indices, in the order of
/// `endpoints`.
///
/// # Errors
/// [`RpcError::NotBuilt`] without the RPC backend, and for a helper that cannot be reached, does not
/// answer the greeting, speaks another protocol version or offers no device, the variant naming it.
pub fn connect(endpoints: &[String]) -> Result<Vec<usize>, RpcError> {
    let mut indices = Vec::new();
    for endpoint in endpoints {
        if let Some(known) = connected().as_ref().and_then(|m| m.get(endpoint)) {
            indices.extend(known);
            continue;
        }
        greet(endpoint)?;
        let devs = add_server(endpoint)?;
        connected()
            .get_or_insert_with(HashMap::new)
            .insert(endpoint.clone(), devs.clone());
        indices.extend(devs);
    }
    Ok(indices)
}

/// Says HELLO the way ggml's client does and checks the answer, so that llama.cpp's own
/// connection (which aborts on any failure) starts only against a helper known to answer.
fn greet(endpoint: &str) -> Result<(), RpcError> {
    let unreachable = |reason: String| RpcError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let not_helper = |reason: String| RpcError::NotAHelper {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let addrs: Vec<_> = endpoint
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last = "the host name has no address".to_owned();
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HELLO_TIMEOUT)))
        .map_err(|e| unreachable(e.to_string()))?;
    // Request: | cmd: u8 | size: u64 LE | conn_caps: [u8; 24] (zero: plain TCP) |.
    let mut hello = vec![CMD_HELLO];
    hello.extend_from_slice(&(CONN_CAPS as u64).to_le_bytes());
    hello.extend_from_slice(&[0; CONN_CAPS]);
    stream
        .write_all(&hello)
        .map_err(|e| not_helper(format!("sending the greeting failed: {e}")))?;
    // Response: | size: u64 LE | major, minor, patch, padding: u8 | conn_caps: [u8; 24] |.
    let mut answer = [0u8; 8 + 4 + CONN_CAPS];
    if let Err(e) = stream.read_exact(&mut answer) {
        return Err(match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => RpcError::Busy {
                endpoint: endpoint.to_owned(),
                secs: HELLO_TIMEOUT.as_secs(),
            },
            _ => not_helper(format!("no greeting in reply: {e}")),
        });
    }
    let size = u64::from_le_bytes(answer[..8].try_into().unwrap_or_default());
    if size != (4 + CONN_CAPS) as u64 {
        return Err(not_helper(format!(
            "a greeting of {size} bytes, expected {}",
            4 + CONN_CAPS
        )));
    }
    let (major, minor) = (answer[8], answer[9]);
    if major != RPC_PROTO_MAJOR || minor > RPC_PROTO_MINOR {
        return Err(RpcError::Version {
            endpoint: endpoint.to_owned(),
            major,
            minor,
        });
    }
    Ok(())
}

/// The RPC backend's registry entry, where its extra functions are looked up.
fn rpc_reg() -> Result<sys::ggml_backend_reg_t, RpcError> {
    crate::backends::load();
    // SAFETY: a NUL-terminated name; the registry returns null when no backend has that name.
    let reg = unsafe { sys::ggml_backend_reg_by_name(c"RPC".as_ptr()) };
    if reg.is_null() {
        Err(RpcError::NotBuilt)
    } else {
        Ok(reg)
    }
}

/// Looks up one of the RPC backend's functions by name.
fn proc_address(name: &CStr) -> Result<*mut c_void, RpcError> {
    let reg = rpc_reg()?;
    // SAFETY: `reg` is the live RPC registry entry and `name` is NUL-terminated.
    let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
    if f.is_null() {
        Err(RpcError::NotBuilt)
    } else {
        Ok(f)
    }
}

/// `ggml_backend_reg_t ggml_backend_rpc_add_server(const char * endpoint)` (ggml-rpc.h).
type AddServerFn = unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t;
/// `void ggml_backend_rpc_start_server(const char * endpoint, const char * cache_dir,
/// size_t n_threads, size_t n_devices, ggml_backend_dev_t * devices)` (ggml-rpc.h).
type StartServerFn =
    unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t);

/// Registers a helper's devices with ggml and returns their indices in ggml's device list.
fn add_server(endpoint: &str) -> Result<Vec<usize>, RpcError> {
    let f = proc_address(c"ggml_backend_rpc_add_server")?;
    // SAFETY: the registry hands out `ggml_backend_rpc_add_server` under this name, whose C
    // signature is `AddServerFn`; a data pointer and a function pointer have the same size here.
    let add: AddServerFn = unsafe { std::mem::transmute::<*mut c_void, AddServerFn>(f) };
    let c_endpoint = CString::new(endpoint).map_err(|_| RpcError::NotAHelper {
        endpoint: endpoint.to_owned(),
        reason: "the address contains a NUL byte".into(),
    })?;
    // SAFETY: a NUL-terminated endpoint, copied by ggml. It connects (the helper just answered our
    // greeting), asks for the device count and returns a registry entry that lives as long as the
    // process, or null when the helper has no device.
    let reg = unsafe { add(c_endpoint.as_ptr()) };
    if reg.is_null() {
        return Err(RpcError::NoDevices {
            endpoint: endpoint.to_owned(),
        });
    }
    // SAFETY: `reg` is a live registry entry; registering it twice is a no-op in ggml.
    unsafe { sys::ggml_backend_register(reg) };
    // SAFETY: `reg` is live and its device indices are below its device count.
    let reg_devices: Vec<sys::ggml_backend_dev_t> = unsafe {
        (0..sys::ggml_backend_reg_dev_count(reg))
            .map(|i| sys::ggml_backend_reg_dev_get(reg, i))
            .collect()
    };
    let count = dev_count();
    let indices: Vec<usize> = (0..count)
        .filter(|&i| reg_devices.contains(&dev(i)))
        .collect();
    if indices.is_empty() {
        return Err(RpcError::NoDevices {
            endpoint: endpoint.to_owned(),
        });
    }
    Ok(indices)
}

/// Layers for the helpers: `requested`, else in proportion to the helpers' free memory against
/// this machine's (at least one, at most all).
///
/// # Errors
/// [`RpcError::Layers`] when `requested` is 0 or more than `total`.
pub fn split_layers(
    total: u32,
    requested: Option<u32>,
    local_free: usize,
    remote_free: usize,
) -> Result<RpcSplit, RpcError> {
    let remote = match requested {
        Some(n) if n == 0 || n > total => {
            return Err(RpcError::Layers {
                requested: n,
                available: total,
            })
        }
        Some(n) => n,
        None => {
            let sum = (local_free as f64 + remote_free as f64).max(1.0);
            let share = remote_free as f64 / sum;
            ((total as f64 * share).round() as u32).clamp(1, total)
        }
    };
    Ok(RpcSplit { remote, total })
}

/// Model parameters that put the target's last layers on the helpers at `endpoints`, connecting
/// to them first, and the split they make (`None` where llama.cpp splits by free memory). With placement `cpu` the other layers stay in this machine's RAM (`rpc_layers`
/// or free memory decides how many go remote); with `gpu` every layer goes to a device, split over
/// the local GPUs and the helpers by free memory.
///
/// # Errors
/// The [`connect`] errors, [`RpcError::Placement`] for `stream` and `layers:N`,
/// [`RpcError::LayersWithGpu`], and [`RpcError::Layers`] / [`RpcError::UnknownLayers`] for a
/// layer count that does not fit the model at `path`.
pub fn split_params(
    path: &Path,
    placement: Placement,
    endpoints: &[String],
    rpc_layers: Option<u32>,
) -> Result<(LlamaModelParams, Option<RpcSplit>), RpcError> {
    let remote = connect(endpoints)?;
    let layers = canopy_gguf::inspect(path)
        .map_err(|e| RpcError::UnknownLayers(e.to_string()))?
        .layers
        .ok_or_else(|| RpcError::UnknownLayers("no block_count in the file".into()))?;
    let total = u32::try_from(layers)
        .ok()
        .and_then(|l| l.checked_add(1))
        .ok_or_else(|| RpcError::UnknownLayers(format!("{layers} layers")))?;
    let too_many = |e: llama_cpp_2::LlamaCppError| RpcError::TooManyDevices(e.to_string());
    match placement {
        Placement::Cpu | Placement::Auto => {
            let local_free: usize = devices_without_querying_helpers()
                .iter()
                .filter(|(_, kind, _)| *kind == DeviceKind::Cpu)
                .map(|(i, _, _)| describe(*i, dev(*i)).free_bytes)
                .sum();
            let remote_free: usize = remote.iter().map(|&i| describe(i, dev(i)).free_bytes).sum();
            let split = split_layers(total, rpc_layers, local_free, remote_free)?;
            let params = LlamaModelParams::default()
                .with_n_gpu_layers(split.remote)
                .with_devices(&remote)
                .map_err(too_many)?;
            Ok((params, Some(split)))
        }
        Placement::Gpu => {
            if rpc_layers.is_some() {
                return Err(RpcError::LayersWithGpu);
            }
            // Helpers first, as llama.cpp orders them by default: the local GPUs then hold the last
            // layers and the output, whose logits need not cross the network.
            let mut devs = remote;
            devs.extend(local_gpus());
            let params = LlamaModelParams::default()
                .with_n_gpu_layers(u32::MAX / 2)
                .with_devices(&devs)
                .map_err(too_many)?;
            Ok((params, None))
        }
        Placement::Stream | Placement::Partial { .. } => Err(RpcError::Placement {
            placement: match placement {
                Placement::Stream => "stream".to_owned(),
                Placement::Partial { layers } => format!("layers:{layers}"),
                _ => String::new(),
            },
        }),
    }
}

/// Loads a target split over helpers by `params` (from [`split_params`]) with its local layers in
/// plain CPU buffers, as the helpers keep theirs: llama.cpp would otherwise repack them for this CPU
/// variant's kernels (AMX tiles, interleaved q4_0 rows), which round differently from the plain
/// kernels the helpers run, and the split would not give the local run's greedy text.
///
/// llama-cpp-2 has no setting for llama.cpp's `use_extra_bufts`, so this loads through llama.cpp's
/// C API and hands the model to llama-cpp-2's wrapper, which owns and frees it as it frees its own.
///
/// # Errors
/// When the path is not UTF-8 or llama.cpp cannot load the file.
pub fn load_split(
    _backend: &llama_cpp_2::llama_backend::LlamaBackend,
    path: &Path,
    params: &LlamaModelParams,
) -> Result<llama_cpp_2::model::LlamaModel, String> {
    // `LlamaModel` is `#[repr(transparent)]` over a non-null `llama_model` pointer (llama-cpp-2
    // 0.1.160, pinned in Cargo.toml); this fails to compile if its size ever changes.
    const _: () = assert!(
        std::mem::size_of::<llama_cpp_2::model::LlamaModel>()
            == std::mem::size_of::<std::ptr::NonNull<sys::llama_model>>()
    );
    let path = path
        .to_str()
        .and_then(|p| CString::new(p).ok())
        .ok_or_else(|| format!("{} is not a valid UTF-8 path", path.display()))?;
    // SAFETY: returns llama.cpp's default parameters by value.
    let mut raw = unsafe { sys::llama_model_default_params() };
    raw.n_gpu_layers = params.n_gpu_layers();
    let mut devices: Vec<sys::ggml_backend_dev_t> = params.devices().into_iter().map(dev).collect();
    devices.push(std::ptr::null_mut());
    raw.devices = devices.as_mut_ptr();
    raw.use_extra_bufts = false;
    // SAFETY: a NUL-terminated path and parameters whose device list (null-terminated, alive for
    // the call) holds devices of ggml's registry; llama.cpp copies what it keeps.
    let model = unsafe { sys::llama_model_load_from_file(path.as_ptr(), raw) };
    let model = std::ptr::NonNull::new(model).ok_or("llama.cpp could not load the file")?;
    // SAFETY: same size and representation (checked above); the wrapper frees the model once,
    // when dropped, with llama.cpp's own function.
    Ok(unsafe {
        std::mem::transmute::<std::ptr::NonNull<sys::llama_model>, llama_cpp_2::model::LlamaModel>(
            model,
        )
    })
}

/// Picks devices to serve by name (case-insensitive): the given names, else every local GPU, else
/// the CPU (as llama.cpp's `rpc-server` does).
///
/// # Errors
/// [`RpcError::UnknownDevice`] naming the devices there are.
pub fn serve_devices(names: &[String]) -> Result<Vec<Device>, RpcError> {
    let all: Vec<Device> = devices()
        .into_iter()
        .filter(|d| d.backend != "RPC")
        .collect();
    if names.is_empty() {
        let gpus: Vec<Device> = all
            .iter()
            .filter(|d| d.kind == DeviceKind::Gpu)
            .cloned()
            .collect();
        if !gpus.is_empty() {
            return Ok(gpus);
        }
        return Ok(all
            .into_iter()
            .filter(|d| d.kind == DeviceKind::Cpu)
            .collect());
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| RpcError::UnknownDevice {
                    name: name.clone(),
                    available: all
                        .iter()
                        .map(|d| format!("{} ({})", d.name, d.description))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Serves `devices` to RPC clients on `endpoint` (`host:port`) with ggml's RPC server, until the
/// process is killed. `cache` is a directory where the server keeps large tensors by hash, so that a
/// client loading the same model again sends only hashes.
///
/// # Errors
/// [`RpcError::NotBuilt`], [`RpcError::ServeAddress`], [`RpcError::Cache`]; returns `Ok` only when
/// ggml's server gives up (it prints why: the port is taken, say).
pub fn serve(
    endpoint: &str,
    devices: &[Device],
    threads: usize,
    cache: Option<&Path>,
) -> Result<(), RpcError> {
    static INIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: llama.cpp's one-time process initialisation (timers, f16 tables), run once; this
    // process runs no model of its own.
    INIT.call_once(|| unsafe { sys::llama_backend_init() });
    let f = proc_address(c"ggml_backend_rpc_start_server")?;
    // SAFETY: the registry hands out `ggml_backend_rpc_start_server` under this name, whose C
    // signature is `StartServerFn`.
    let start: StartServerFn = unsafe { std::mem::transmute::<*mut c_void, StartServerFn>(f) };
    let c_endpoint =
        CString::new(endpoint).map_err(|_| RpcError::ServeAddress(endpoint.to_owned()))?;
    let c_cache = match cache {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| RpcError::Cache {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            let text = dir.to_str().ok_or_else(|| RpcError::Cache {
                path: dir.display().to_string(),
                reason: "not valid UTF-8".into(),
            })?;
            Some(CString::new(text).map_err(|_| RpcError::Cache {
                path: text.to_owned(),
                reason: "contains a NUL byte".into(),
            })?)
        }
        None => None,
    };
    let mut devs: Vec<sys::ggml_backend_dev_t> = devices.iter().map(|d| dev(d.index)).collect();
    // SAFETY: NUL-terminated strings and a device array that outlive the call (it runs until the
    // process ends or the server fails); every device is a live device of ggml's registry.
    unsafe {
        start(
            c_endpoint.as_ptr(),
            c_cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads.max(1),
            devs.len(),
            devs.as_mut_ptr(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn split_follows_free_memory_and_requests() {
        let s = |req, l, r| split_layers(31, req, l, r);
        assert_eq!(s(None, 100, 100).unwrap().remote, 16);
        assert_eq!(s(None, 300, 100).unwrap().remote, 8);
        // A helper with almost nothing free still gets one layer; one with everything gets all.
        assert_eq!(s(None, 100, 0).unwrap().remote, 1);
        assert_eq!(s(None, 0, 100).unwrap().remote, 31);
        assert_eq!(
            s(Some(5), 1, 1).unwrap(),
            RpcSplit {
                remote: 5,
                total: 31
            }
        );
        assert!(matches!(s(Some(0), 1, 1), Err(RpcError::Layers { .. })));
        assert!(matches!(s(Some(32), 1, 1), Err(RpcError::Layers { .. })));
    }

    #[test]
    fn a_closed_port_is_unreachable_not_an_abort() {
        // Bind then drop: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let err = greet(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(matches!(err, RpcError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&port.to_string()));
    }

    #[test]
    fn a_silent_server_is_busy_and_a_chatty_one_is_not_a_helper() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let err = greet(&addr).unwrap_err();
        assert!(matches!(err, RpcError::Busy { .. }), "{err}");

        let chatty = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = chatty.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = chatty.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n and more bytes to fill");
        });
        let err = greet(&addr).unwrap_err();
        assert!(matches!(err, RpcError::NotAHelper { .. }), "{err}");
        server.join().unwrap();
    }
}
