//! Teleport's GCS layout (work in progress).
