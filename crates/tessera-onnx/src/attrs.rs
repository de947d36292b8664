//! Typed access to a node's attributes, with the errors a user can act on.

use crate::proto::{AttributeProto, TensorProto};

/// `AttributeProto.AttributeType` codes.
const FLOAT: i32 = 1;
const INT: i32 = 2;
const STRING: i32 = 3;
const TENSOR: i32 = 4;
const FLOATS: i32 = 6;
const INTS: i32 = 7;

/// The attributes of one node.
pub struct Attrs<'a>(pub &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn check(a: &AttributeProto, want: i32, what: &str) -> Result<(), String> {
        if a.ref_attr_name.is_some() {
            return Err(format!("attribute '{}' refers to a function attribute", a.name.as_deref().unwrap_or("")));
        }
        match a.r#type {
            Some(t) if t != want && t != 0 => Err(format!("attribute '{}' is not {what}", a.name.as_deref().unwrap_or(""))),
            _ => Ok(()),
        }
    }

    /// An int attribute, or `default` when absent.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                Self::check(a, INT, "an int")?;
                Ok(a.i.unwrap_or(0))
            }
        }
    }

    /// A required int attribute.
    pub fn int_req(&self, name: &str) -> Result<i64, String> {
        if !self.has(name) {
            return Err(format!("attribute '{name}' is required"));
        }
        self.int(name, 0)
    }

    /// A float attribute, or `default` when absent.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                if a.r#type == Some(INT) {
                    return Ok(a.i.unwrap_or(0) as f32);
                }
                Self::check(a, FLOAT, "a float")?;
                Ok(a.f.unwrap_or(0.0))
            }
        }
    }

    /// A string attribute, or `default` when absent.
    pub fn string(&self, name: &str, default: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) => {
                Self::check(a, STRING, "a string")?;
                Ok(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned())
            }
        }
    }

    /// An ints attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check(a, INTS, "a list of ints")?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    /// A floats attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check(a, FLOATS, "a list of floats")?;
                Ok(Some(a.floats.clone()))
            }
        }
    }

    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check(a, TENSOR, "a tensor")?;
                a.t.as_ref().map(Some).ok_or_else(|| format!("attribute '{name}' holds no tensor"))
            }
        }
    }
}
