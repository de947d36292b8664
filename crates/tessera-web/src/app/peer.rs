//! `PeerApp`: the peer page's engine. Order of use from JavaScript:
//! `new PeerApp(name)` → `await init_backend(gpu)` → `await
//! profile("quick")` → `start(location.href)` → poll `status()`.
//!
//! On the CPU a task runs inside the page's work slice; on WebGPU it is
//! taken from the peer (`Peer::next_task`), awaited, and handed back
//! (`Peer::complete`), one at a time, while the page keeps answering the
//! coordinator.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use tessera_kernels::Backend;
use tessera_mesh::peer::PeerStatus;
use tessera_mesh::transport::signal::Role;
use tessera_mesh::transport::web::{MeshInfo, WebConfig, WebMesh};
use tessera_mesh::peer::PendingTask;
use tessera_mesh::{Input, Peer, PeerConfig};
use tessera_plan::DeviceProfile;
use tessera_runtime::profile::{ProfileConfig, measure_async};
use wasm_bindgen::prelude::*;

use super::backend::{self, Choice, GpuMode};
use super::{Interval, Scheduler, carry_out, drive, js_err, perf_now, sleep_ms, to_json};
use crate::view::{ProfileRow, profile_rows};

/// Longest stretch of tasks run before yielding to the browser, ms.
const SLICE_MS: f64 = 10.0;
/// Tick period, ms.
const TICK_MS: i32 = 100;

/// Milestones of this page, ms since it loaded (`performance.now()`).
#[derive(Clone, Debug, Default, Serialize)]
struct Timings {
    profile_ms: Option<f64>,
    start_ms: Option<f64>,
    joined_ms: Option<f64>,
    connected_ms: Option<f64>,
    first_plan_ms: Option<f64>,
}

struct Inner {
    name: String,
    caps: super::Capabilities,
    backend: Option<Box<dyn Backend>>,
    choice: Option<Choice>,
    profile: Option<DeviceProfile>,
    profile_mode: String,
    peer: Option<Peer>,
    mesh: Option<WebMesh>,
    sched: Option<Rc<Scheduler>>,
    interval: Option<Interval>,
    timings: Timings,
    last_error: Option<String>,
    slices: u64,
    /// A task is out on the GPU (async backends run one at a time).
    busy: bool,
    /// `profile()` holds the backend while it measures.
    profiling: bool,
    /// The WebGPU device in use, to break on purpose (tests).
    gpu_switch: backend::GpuSwitch,
}

/// The peer page's engine (see the module docs).
#[wasm_bindgen]
pub struct PeerApp {
    rc: Rc<RefCell<Inner>>,
}

#[derive(Serialize)]
struct Status<'a> {
    name: &'a str,
    caps: &'a super::Capabilities,
    backend: Option<&'a Choice>,
    profile_mode: &'a str,
    profile: Vec<ProfileRow>,
    peer: Option<PeerStatus>,
    mesh: Option<MeshInfo>,
    timings: &'a Timings,
    last_error: Option<&'a str>,
    slices: u64,
}

#[wasm_bindgen]
impl PeerApp {
    /// A peer called `name` (shown on the dashboard).
    #[wasm_bindgen(constructor)]
    pub fn new(name: String) -> PeerApp {
        let inner = Inner {
            name,
            caps: super::capabilities(),
            backend: None,
            choice: None,
            profile: None,
            profile_mode: "none".into(),
            peer: None,
            mesh: None,
            sched: None,
            interval: None,
            timings: Timings::default(),
            last_error: None,
            slices: 0,
            busy: false,
            profiling: false,
            gpu_switch: backend::GpuSwitch::default(),
        };
        PeerApp { rc: Rc::new(RefCell::new(inner)) }
    }

    /// Chooses the backend: `gpu` is the page's `gpu=` parameter ("0":
    /// CPU, "1": WebGPU whenever it passes its self-test, "" or "auto":
    /// WebGPU on a hardware adapter). Resolves to the choice as JSON
    /// `{kind, name, note, gpu_adapter}`.
    pub fn init_backend(&self, gpu: String) -> js_sys::Promise {
        let rc = self.rc.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mode = GpuMode::parse(&gpu).map_err(js_err)?;
            let has = rc.borrow().caps.webgpu;
            let (b, choice, switch) = backend::choose(mode, has).await;
            let json = to_json(&choice);
            let mut s = rc.borrow_mut();
            s.backend = Some(b);
            s.gpu_switch = switch;
            s.choice = Some(choice);
            Ok(JsValue::from(json))
        })
    }

    /// Runs the self-profile on the chosen backend: `"quick"`
    /// (`ProfileConfig::quick()`, what a joining browser runs), `"fast"`
    /// (a few tiny layers: tests) or `"none"` (the coordinator assumes its
    /// default profile). Resolves to the table rows as JSON.
    pub fn profile(&self, mode: String) -> js_sys::Promise {
        let rc = self.rc.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            sleep_ms(0).await; // let the page say "profiling" first
            let cfg = profile_config(&mode).map_err(js_err)?;
            let (backend, name, memory_mb) = {
                let mut s = rc.borrow_mut();
                s.profile_mode = mode;
                let Some(_) = cfg else {
                    s.profile = None;
                    return Ok(JsValue::from("[]"));
                };
                if s.profiling {
                    return Err(js_err("already profiling"));
                }
                s.profiling = true;
                let b = s.backend.take().unwrap_or_else(|| Box::new(tessera_kernels::CpuBackend::new(1)));
                (b, format!("browser:{}", s.name), memory_mb(&s.caps))
            };
            // No borrow is held across the awaits (the page polls status()).
            let t0 = perf_now();
            let res = measure_async(backend.as_ref(), &name, memory_mb, cfg.expect("checked above"), &perf_now).await;
            let mut s = rc.borrow_mut();
            s.backend = Some(backend);
            s.profiling = false;
            let p = res.map_err(js_err)?;
            s.timings.profile_ms = Some(perf_now() - t0);
            let rows = to_json(&profile_rows(&p));
            s.profile = Some(p);
            Ok(JsValue::from(rows))
        })
    }

    /// Joins the room of `url` (the page's own URL: `?room=R&token=T`) and
    /// starts serving tasks.
    pub fn start(&self, url: String) -> Result<(), JsValue> {
        let mut s = self.rc.borrow_mut();
        if s.peer.is_some() {
            return Err(js_err("already started"));
        }
        if s.profiling {
            return Err(js_err("the self-profile is still running: await profile() first"));
        }
        let backend = match s.backend.take() {
            Some(b) => b,
            None => Box::new(tessera_kernels::CpuBackend::new(1)),
        };
        if s.choice.is_none() {
            s.choice = Some(Choice { kind: "cpu", name: backend.name(), note: "CPU (wasm SIMD)".into(), gpu_adapter: None });
        }
        let mut caps = vec!["simd128".to_string()];
        if s.caps.webgpu {
            caps.push("webgpu".into());
        }
        let mut cfg = PeerConfig::new(s.name.clone());
        cfg.caps = caps;
        cfg.profile = s.profile.clone();
        cfg.defer_runs = true;
        // After a GPU fallback the peer re-measures itself the same way (on
        // the CPU: synchronous), so the coordinator re-plans at once.
        let mut peer = Peer::new(cfg, backend, Box::new(perf_now));
        if let Ok(Some(pc)) = profile_config(&s.profile_mode) {
            let (name, memory_mb) = (format!("browser:{}", s.name), memory_mb(&s.caps));
            peer = peer.with_reprofile(Box::new(move |b| tessera_runtime::profile::measure(b, &name, memory_mb, pc, &perf_now).ok()));
        }
        let mesh = WebMesh::join(&url, WebConfig::new(Role::Peer, s.name.clone())).map_err(js_err)?;
        let (sched, interval) = drive(&self.rc, &mesh, TICK_MS, work, tick)?;
        s.peer = Some(peer);
        s.mesh = Some(mesh);
        s.sched = Some(sched);
        s.interval = Some(interval);
        s.timings.start_ms = Some(perf_now());
        Ok(())
    }

    /// Everything the page shows, as JSON.
    pub fn status(&self) -> String {
        let s = self.rc.borrow();
        to_json(&Status {
            name: &s.name,
            caps: &s.caps,
            backend: s.choice.as_ref(),
            profile_mode: &s.profile_mode,
            profile: s.profile.as_ref().map(profile_rows).unwrap_or_default(),
            peer: s.peer.as_ref().map(Peer::status),
            mesh: s.mesh.as_ref().map(WebMesh::info),
            timings: &s.timings,
            last_error: s.last_error.as_deref(),
            slices: s.slices,
        })
    }

    /// The measured profile (`tessera_plan::DeviceProfile` JSON, as
    /// `tessera profile` writes it), or `null`.
    pub fn profile_json(&self) -> String {
        to_json(&self.rc.borrow().profile)
    }

    /// Destroys the WebGPU device as a driver reset would (for tests of the
    /// fallback path: tasks move to the CPU and the coordinator is told).
    /// Returns whether there was a GPU to lose.
    pub fn simulate_gpu_loss(&self) -> bool {
        self.rc.borrow().gpu_switch.lose()
    }

    /// Says goodbye to the coordinator and leaves the room.
    pub fn leave(&self) {
        let mut guard = self.rc.borrow_mut();
        let s = &mut *guard;
        s.interval = None;
        if let (Some(peer), Some(mesh)) = (s.peer.as_mut(), s.mesh.clone()) {
            let outs = peer.leave("the page left");
            carry_out(&mesh, outs);
            mesh.close();
        }
    }
}

/// The self-profile of a page's `profile=` mode (`None`: no profile).
fn profile_config(mode: &str) -> Result<Option<ProfileConfig>, String> {
    match mode {
        "quick" => Ok(Some(ProfileConfig::quick())),
        "full" => Ok(Some(ProfileConfig::full())),
        "fast" => Ok(Some(ProfileConfig { sizes: 3, repeats: 1, max_flops: 2e7 })),
        "none" => Ok(None),
        other => Err(format!("unknown profile mode {other:?} (quick, fast, full, none)")),
    }
}

/// The memory a profile announces: half the device's, at most 2 GiB.
fn memory_mb(caps: &super::Capabilities) -> f64 {
    caps.memory_gb.map_or(2048.0, |g| (g * 1024.0 * 0.5).min(2048.0))
}

/// Feeds the mesh's events to the peer and sends what it says.
fn pump(s: &mut Inner) {
    let (Some(peer), Some(mesh)) = (s.peer.as_mut(), s.mesh.as_ref()) else { return };
    let events = mesh.poll();
    if events.is_empty() {
        return;
    }
    let now = perf_now();
    let mut err = carry_out(mesh, peer.handle(Input::Tick { now_ms: now }));
    for ev in events {
        if matches!(ev, Input::Connected(_)) && s.timings.connected_ms.is_none() {
            s.timings.connected_ms = Some(now);
        }
        err = carry_out(mesh, peer.handle(ev)).or(err);
    }
    if s.timings.first_plan_ms.is_none() && peer.weight_bytes() > 0 {
        s.timings.first_plan_ms = Some(perf_now());
    }
    if let Some(e) = err {
        s.last_error = Some(e);
    }
}

/// One slice of work: events in, queued tasks run until the slice is used
/// up (events are taken between tasks so pings are answered on time), then
/// yield and come back if tasks remain. On an async backend the next task
/// is sent off to the GPU instead ([`run_on_gpu`]), one at a time.
fn work(rc: &Rc<RefCell<Inner>>) {
    let Ok(mut g) = rc.try_borrow_mut() else {
        return;
    };
    let s = &mut *g;
    s.slices += 1;
    let t0 = perf_now();
    let is_async = s.choice.as_ref().is_some_and(Choice::is_async);
    loop {
        pump(s);
        let (Some(peer), Some(mesh)) = (s.peer.as_mut(), s.mesh.as_ref()) else { return };
        if s.busy || peer.queued() == 0 {
            break;
        }
        if is_async {
            let (task, outs) = peer.next_task();
            if let Some(e) = carry_out(mesh, outs) {
                s.last_error = Some(e);
            }
            if let Some(t) = task {
                s.busy = true;
                run_on_gpu(Rc::downgrade(rc), t);
            }
            continue;
        }
        if let Some(e) = carry_out(mesh, peer.run_next()) {
            s.last_error = Some(e);
        }
        if perf_now() - t0 > SLICE_MS {
            break;
        }
    }
    if !s.busy
        && s.peer.as_ref().is_some_and(|p| p.queued() > 0)
        && let Some(sc) = &s.sched
    {
        sc.schedule();
    }
}

/// Awaits one task's kernels on the GPU, hands the task back to the peer
/// and schedules the next slice of work.
fn run_on_gpu(app: std::rc::Weak<RefCell<Inner>>, mut task: PendingTask) {
    wasm_bindgen_futures::spawn_local(async move {
        let t0 = perf_now();
        let res = task.execute().await;
        let ms = perf_now() - t0;
        let Some(rc) = app.upgrade() else { return };
        let mut g = rc.borrow_mut();
        let s = &mut *g;
        s.busy = false;
        if let (Some(peer), Some(mesh)) = (s.peer.as_mut(), s.mesh.as_ref())
            && let Some(e) = carry_out(mesh, peer.complete(task, res, ms))
        {
            s.last_error = Some(e);
        }
        if let Some(sc) = &s.sched {
            sc.schedule();
        }
    });
}

fn tick(rc: &Rc<RefCell<Inner>>) {
    {
        let Ok(mut g) = rc.try_borrow_mut() else { return };
        let s = &mut *g;
        let (Some(peer), Some(mesh)) = (s.peer.as_mut(), s.mesh.as_ref()) else { return };
        let outs = peer.handle(Input::Tick { now_ms: perf_now() });
        carry_out(mesh, outs);
        mesh.tick();
        if s.timings.joined_ms.is_none() && mesh.id().is_some() {
            s.timings.joined_ms = Some(perf_now());
        }
    }
    work(rc);
}
