//! The tower stack of DESIGN §1, one folder per layer.
