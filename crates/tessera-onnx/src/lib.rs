//! ONNX import (placeholder until the importer lands).
