//! Empty: the artefact is `libkryoptic_pkcs11.so`, built as a dependency.
