//! Host bindings generated from the WIT world in `guest-sdk/wit/`, the single
//! source of truth for the host/guest contract.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "transform",
    // Exports are called asynchronously so that a guest blocked in a host
    // call (a sleep, a poll) can be cut off at its deadline; see deadline.rs.
    exports: { default: async },
});

impl Transform {
    /// The `process` export, for calls that lower their batch themselves
    /// (`lowering.rs`).
    pub(super) fn process_func(&self) -> wasmtime::component::Func {
        self.process
    }
}
