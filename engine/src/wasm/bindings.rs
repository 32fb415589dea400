//! Host bindings generated from the WIT world in `guest-sdk/wit/`, the single
//! source of truth for the host/guest contract.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "transform",
});
