//! `CoordinatorApp`: the dashboard's engine. From JavaScript:
//! `new CoordinatorApp(configJson)` → `load_zoo("lenet")` (or
//! `load_onnx(bytes, fileName)`) → `start(location.href)` → submit inputs
//! (`submit_mnist`, `submit_synthetic`, `submit_rgba`) → poll `status()` and
//! `rows(from)`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use tessera_mesh::Input;
use tessera_mesh::transport::signal::Role;
use tessera_mesh::transport::web::{MeshInfo, WebConfig, WebMesh};
use wasm_bindgen::prelude::*;

use super::{Interval, Scheduler, carry_out, drive, js_err, perf_now, to_json};
use crate::session::{ModelSource, Session, SessionConfig, SessionStatus, load_model};

/// Tick period, ms.
const TICK_MS: i32 = 50;

struct Inner {
    name: String,
    cfg: SessionConfig,
    session: Option<Session>,
    mesh: Option<WebMesh>,
    sched: Option<Rc<Scheduler>>,
    interval: Option<Interval>,
    last_error: Option<String>,
    /// When the model was loaded and the mesh joined (page clock).
    loaded_ms: Option<f64>,
    started_ms: Option<f64>,
    load_model_ms: Option<f64>,
}

/// The dashboard's engine (see the module docs).
#[wasm_bindgen]
pub struct CoordinatorApp {
    rc: Rc<RefCell<Inner>>,
}

#[derive(Serialize)]
struct Status<'a> {
    name: &'a str,
    #[serde(flatten)]
    session: Option<SessionStatus<'a>>,
    mesh: Option<MeshInfo>,
    last_error: Option<&'a str>,
    load_model_ms: Option<f64>,
    now_ms: f64,
}

#[wasm_bindgen]
impl CoordinatorApp {
    /// A coordinator with `config` (JSON of `session::SessionConfig`; `"{}"`
    /// for the defaults: planner `tessera`, window 4, model secret on).
    #[wasm_bindgen(constructor)]
    pub fn new(name: String, config: &str) -> Result<CoordinatorApp, JsValue> {
        let cfg: SessionConfig = if config.trim().is_empty() { SessionConfig::default() } else { serde_json::from_str(config).map_err(|e| js_err(format!("config: {e}")))? };
        if !tessera_plan::planners::names().contains(&cfg.coordinator.planner.as_str()) {
            return Err(js_err(format!("unknown planner {:?}", cfg.coordinator.planner)));
        }
        Ok(CoordinatorApp {
            rc: Rc::new(RefCell::new(Inner {
                name,
                cfg,
                session: None,
                mesh: None,
                sched: None,
                interval: None,
                last_error: None,
                loaded_ms: None,
                started_ms: None,
                load_model_ms: None,
            })),
        })
    }

    /// Loads zoo model `name` (a new session: peers reconnect and get new
    /// plans). Returns the model's description as JSON.
    pub fn load_zoo(&self, name: &str) -> Result<String, JsValue> {
        self.load(ModelSource::Zoo(name))
    }

    /// Loads an ONNX model from its bytes (parsed here, in the browser).
    pub fn load_onnx(&self, bytes: &[u8], file_name: &str) -> Result<String, JsValue> {
        self.load(ModelSource::Onnx { name: file_name, bytes })
    }

    fn load(&self, src: ModelSource) -> Result<String, JsValue> {
        let t0 = perf_now();
        let (graph, info) = load_model(src).map_err(js_err)?;
        let mut guard = self.rc.borrow_mut();
        let s = &mut *guard;
        let session = Session::new(graph, info, &s.cfg, Arc::new(perf_now)).map_err(js_err)?;
        let json = to_json(&session.info);
        if let Some(old) = s.session.as_mut()
            && let Some(mesh) = &s.mesh
        {
            carry_out(mesh, old.coordinator().shutdown("switching models"));
        }
        s.session = Some(session);
        s.load_model_ms = Some(perf_now() - t0);
        s.loaded_ms = Some(perf_now());
        if let Some(mesh) = s.mesh.clone() {
            drop(guard);
            mesh.reconnect_all();
        }
        Ok(json)
    }

    /// Joins the room of `url` as its coordinator.
    pub fn start(&self, url: String) -> Result<(), JsValue> {
        let mut s = self.rc.borrow_mut();
        if s.mesh.is_some() {
            return Err(js_err("already started"));
        }
        let mesh = WebMesh::join(&url, WebConfig::new(Role::Coordinator, s.name.clone())).map_err(js_err)?;
        let (sched, interval) = drive(&self.rc, &mesh, TICK_MS, pump, tick)?;
        s.mesh = Some(mesh);
        s.sched = Some(sched);
        s.interval = Some(interval);
        s.started_ms = Some(perf_now());
        Ok(())
    }

    /// Switches the planner (any of `planners()`); re-plans.
    pub fn set_planner(&self, name: &str) -> Result<(), JsValue> {
        let mut s = self.rc.borrow_mut();
        s.cfg.coordinator.planner = name.to_string();
        if let Some(sess) = s.session.as_mut() {
            sess.coordinator().set_planner(name, Vec::new()).map_err(js_err)?;
        }
        drop(s);
        self.flush();
        Ok(())
    }

    /// Re-plans now on the live peers.
    pub fn replan(&self) {
        if let Some(sess) = self.rc.borrow_mut().session.as_mut() {
            sess.coordinator().replan();
        }
        self.flush();
    }

    /// Frames in flight at most.
    pub fn set_window(&self, n: usize) {
        let mut s = self.rc.borrow_mut();
        s.cfg.coordinator.window = n.max(1);
        if let Some(sess) = s.session.as_mut() {
            sess.coordinator().set_window(n);
        }
        drop(s);
        self.flush();
    }

    /// Compare every n-th frame with a local run.
    pub fn set_compare_every(&self, n: usize) {
        if let Some(sess) = self.rc.borrow_mut().session.as_mut() {
            sess.set_compare_every(n);
        }
    }

    /// Submits the next `n` bundled MNIST digits; returns the first frame id.
    pub fn submit_mnist(&self, n: usize) -> Result<f64, JsValue> {
        let ids = self.with_session(|s| s.submit_mnist(n))?;
        self.flush();
        Ok(ids.first().map_or(-1.0, |&i| i as f64))
    }

    /// Submits `n` procedural images (digits for an MNIST model).
    pub fn submit_synthetic(&self, n: usize) -> Result<f64, JsValue> {
        let ids = self.with_session(|s| s.submit_synthetic(n))?;
        self.flush();
        Ok(ids.first().map_or(-1.0, |&i| i as f64))
    }

    /// Submits an RGBA image (`ImageData.data` of a file or camera frame).
    pub fn submit_rgba(&self, rgba: &[u8], width: usize, height: usize, source: String, label: Option<String>) -> Result<f64, JsValue> {
        let id = self.with_session(|s| s.submit_rgba(rgba, width, height, source, label))?;
        self.flush();
        Ok(id as f64)
    }

    /// Frames submitted and not yet delivered.
    pub fn pending(&self) -> usize {
        self.rc.borrow().session.as_ref().map_or(0, Session::pending)
    }

    /// The dashboard's snapshot as JSON.
    pub fn status(&self) -> String {
        let s = self.rc.borrow();
        to_json(&Status {
            name: &s.name,
            session: s.session.as_ref().map(Session::status),
            mesh: s.mesh.as_ref().map(WebMesh::info),
            last_error: s.last_error.as_deref(),
            load_model_ms: s.load_model_ms,
            now_ms: perf_now(),
        })
    }

    /// Result rows from index `from` on, as JSON.
    pub fn rows(&self, from: usize) -> String {
        let s = self.rc.borrow();
        s.session.as_ref().map_or_else(|| "[]".into(), |sess| to_json(sess.rows_from(from)))
    }

    /// The thumbnail of frame `frame` as `{width, height, rgba}` (or `null`).
    pub fn thumb(&self, frame: f64) -> JsValue {
        let s = self.rc.borrow();
        let Some((w, h, px)) = s.session.as_ref().and_then(|sess| sess.thumb(frame as u64)) else { return JsValue::NULL };
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"width".into(), &(w as f64).into());
        let _ = js_sys::Reflect::set(&o, &"height".into(), &(h as f64).into());
        let _ = js_sys::Reflect::set(&o, &"rgba".into(), &js_sys::Uint8ClampedArray::from(px).into());
        o.into()
    }

    /// Says goodbye to every peer and leaves the room.
    pub fn shutdown(&self) {
        let mut guard = self.rc.borrow_mut();
        let s = &mut *guard;
        s.interval = None;
        if let (Some(sess), Some(mesh)) = (s.session.as_mut(), s.mesh.clone()) {
            carry_out(&mesh, sess.coordinator().shutdown("the dashboard closed"));
            mesh.close();
        }
    }
}

impl CoordinatorApp {
    fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> Result<T, String>) -> Result<T, JsValue> {
        let mut s = self.rc.borrow_mut();
        let sess = s.session.as_mut().ok_or_else(|| js_err("no model loaded"))?;
        f(sess).map_err(js_err)
    }

    /// Sends what submits and re-plans queued.
    fn flush(&self) {
        let mut s = self.rc.borrow_mut();
        let s = &mut *s;
        if let (Some(sess), Some(mesh)) = (s.session.as_mut(), s.mesh.as_ref()) {
            // `handle` returns everything queued since the last call too.
            if let Some(e) = carry_out(mesh, sess.handle(Input::Tick { now_ms: perf_now() })) {
                s.last_error = Some(e);
            }
        }
    }
}

/// Feeds the mesh's events to the coordinator and sends what it says.
fn pump(rc: &Rc<RefCell<Inner>>) {
    // Only macrotasks call this, so the state is never borrowed here; the
    // tick retries anyway if it ever were.
    let Ok(mut g) = rc.try_borrow_mut() else { return };
    let s = &mut *g;
    // Without a model there is no coordinator yet: events wait in the mesh.
    let (Some(sess), Some(mesh)) = (s.session.as_mut(), s.mesh.as_ref()) else { return };
    let events = mesh.poll();
    if events.is_empty() {
        return;
    }
    let mut err = carry_out(mesh, sess.handle(Input::Tick { now_ms: perf_now() }));
    for ev in events {
        err = carry_out(mesh, sess.handle(ev)).or(err);
    }
    if let Some(e) = err {
        s.last_error = Some(e);
    }
}

fn tick(rc: &Rc<RefCell<Inner>>) {
    {
        let Ok(mut g) = rc.try_borrow_mut() else { return };
        let s = &mut *g;
        let Some(mesh) = s.mesh.as_ref() else { return };
        mesh.tick();
        if let Some(sess) = s.session.as_mut() {
            let outs = sess.handle(Input::Tick { now_ms: perf_now() });
            if let Some(e) = carry_out(mesh, outs) {
                s.last_error = Some(e);
            }
        }
    }
    pump(rc);
}
