//! The wasm-only half: browser helpers (clock, scheduling, feature
//! detection), the backend choice and the two apps.

mod backend;
mod coordinator;
mod peer;

use std::cell::Cell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

pub use coordinator::CoordinatorApp;
pub use peer::PeerApp;

/// Panics go to the console with their message, once per page.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("tessera-web panicked: {info}").into());
    }));
}

/// `performance.now()` in ms (monotonic).
pub(crate) fn perf_now() -> f64 {
    thread_local! {
        static PERF: Option<web_sys::Performance> = web_sys::window().and_then(|w| w.performance());
    }
    PERF.with(|p| p.as_ref().map_or_else(js_sys::Date::now, |p| p.now()))
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from(js_sys::Error::new(&e.to_string()))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Runs a callback in a fresh macrotask as soon as the event loop is free
/// (a `MessageChannel` message: unlike nested `setTimeout(0)` it is not
/// clamped to 4 ms), at most once per `schedule` burst.
pub(crate) struct Scheduler {
    port: web_sys::MessagePort,
    _other: web_sys::MessagePort,
    _cb: Closure<dyn FnMut(JsValue)>,
    pending: Rc<Cell<bool>>,
}

impl Scheduler {
    pub fn new(f: Rc<dyn Fn()>) -> Result<Scheduler, JsValue> {
        let ch = web_sys::MessageChannel::new()?;
        let pending = Rc::new(Cell::new(false));
        let p = pending.clone();
        let cb: Closure<dyn FnMut(JsValue)> = Closure::new(move |_: JsValue| {
            p.set(false);
            f();
        });
        let other = ch.port2();
        other.set_onmessage(Some(cb.as_ref().unchecked_ref()));
        Ok(Scheduler { port: ch.port1(), _other: other, _cb: cb, pending })
    }

    pub fn schedule(&self) {
        if !self.pending.replace(true) {
            let _ = self.port.post_message(&JsValue::NULL);
        }
    }
}

/// The loop both pages run: `on_wake` whenever the mesh has news (posted as
/// a task, so the page stays responsive), `on_tick` every `tick_ms`, for as
/// long as `app` is alive (the callbacks hold it weakly).
pub(crate) fn drive<T: 'static>(
    app: &Rc<std::cell::RefCell<T>>,
    mesh: &tessera_mesh::transport::web::WebMesh,
    tick_ms: i32,
    on_wake: fn(&Rc<std::cell::RefCell<T>>),
    on_tick: fn(&Rc<std::cell::RefCell<T>>),
) -> Result<(Rc<Scheduler>, Interval), JsValue> {
    let w = Rc::downgrade(app);
    let sched = Rc::new(Scheduler::new(Rc::new(move || {
        if let Some(rc) = w.upgrade() {
            on_wake(&rc);
        }
    }))?);
    let sc = sched.clone();
    mesh.set_waker(Rc::new(move || sc.schedule()));
    let w = Rc::downgrade(app);
    let interval = Interval::new(tick_ms, move || {
        if let Some(rc) = w.upgrade() {
            on_tick(&rc);
        }
    })?;
    Ok((sched, interval))
}

/// A `setInterval` that is cleared when dropped.
pub(crate) struct Interval {
    handle: i32,
    _cb: Closure<dyn FnMut()>,
}

impl Interval {
    pub fn new(ms: i32, f: impl FnMut() + 'static) -> Result<Interval, JsValue> {
        let cb: Closure<dyn FnMut()> = Closure::new(f);
        let w = web_sys::window().ok_or_else(|| js_err("no window"))?;
        let handle = w.set_interval_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), ms)?;
        Ok(Interval { handle, _cb: cb })
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        if let Some(w) = web_sys::window() {
            w.clear_interval_with_handle(self.handle);
        }
    }
}

/// Resolves after `ms` (lets the page paint before a long synchronous job).
pub(crate) async fn sleep_ms(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// What this browser can do.
#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    /// `navigator.gpu` exists (WebGPU; needs a secure context).
    pub webgpu: bool,
    /// This build uses wasm SIMD (it would not have loaded without it).
    pub simd128: bool,
    /// Logical cores (`navigator.hardwareConcurrency`).
    pub cores: f64,
    /// `navigator.deviceMemory` in GB, where the browser says.
    pub memory_gb: Option<f64>,
    pub user_agent: String,
}

pub(crate) fn capabilities() -> Capabilities {
    let nav = web_sys::window().map(|w| w.navigator());
    let get = |k: &str| nav.as_ref().and_then(|n| js_sys::Reflect::get(n, &k.into()).ok()).filter(|v| !v.is_undefined() && !v.is_null());
    Capabilities {
        webgpu: get("gpu").is_some(),
        simd128: cfg!(target_feature = "simd128"),
        cores: nav.as_ref().map_or(1.0, |n| n.hardware_concurrency()),
        memory_gb: get("deviceMemory").and_then(|v| v.as_f64()),
        user_agent: nav.as_ref().and_then(|n| n.user_agent().ok()).unwrap_or_default(),
    }
}

/// The browser's capabilities as JSON (see `Capabilities`).
#[wasm_bindgen(js_name = capabilities)]
pub fn capabilities_json() -> String {
    to_json(&capabilities())
}

/// Every planner name (`tessera_plan::planners::names()`), as a JSON list.
#[wasm_bindgen]
pub fn planners() -> String {
    to_json(&tessera_plan::planners::names())
}

/// The model zoo with sizes, as JSON.
#[wasm_bindgen]
pub fn zoo() -> String {
    to_json(&crate::view::zoo_catalogue())
}

/// A QR code of `text` as SVG markup.
#[wasm_bindgen]
pub fn qr_svg(text: &str) -> Result<String, JsValue> {
    crate::view::qr_svg(text).map_err(js_err)
}

/// The signaling WebSocket URL of a join URL (for the page's own checks).
#[wasm_bindgen]
pub fn ws_url(join_url: &str) -> Result<String, JsValue> {
    tessera_mesh::transport::signal::ws_url_from_join_url(join_url).map_err(js_err)
}

/// Package version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Carries out a state machine's outputs on the mesh; returns the last
/// send error, if any.
pub(crate) fn carry_out(mesh: &tessera_mesh::transport::web::WebMesh, outs: Vec<tessera_mesh::Output>) -> Option<String> {
    let mut err = None;
    for o in outs {
        match o {
            tessera_mesh::Output::Send(to, frame) => {
                if let Err(e) = mesh.send(to, frame) {
                    err = Some(e);
                }
            }
            tessera_mesh::Output::Close(to, _) => mesh.close_peer(to),
        }
    }
    err
}
