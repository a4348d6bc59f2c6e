//! Teleport's Azure layout (work in progress).
