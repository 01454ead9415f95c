//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings from the built library (UniFFI's library
//! mode), so the generator is the same release as the scaffolding.

fn main() {
    uniffi::uniffi_bindgen_main()
}
