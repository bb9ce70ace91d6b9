//! The layer's tests of what a process has once: its peak resident memory
//! (`caps_memory`), the `tracing` maximum level that `request_spans_enabled` reads
//! (`filters`), the global `metrics` recorder (`recorder_installed_later`) and the switch
//! that turns the operation families on (`operation_families`). They run one
//! after the other, in one test, so that no other test allocates, holds a subscriber or
//! installs a recorder meanwhile.

// The harness of `layer/`, of which these tests use a part.
#[allow(dead_code, unused_imports)]
#[path = "../layer/support.rs"]
mod support;

mod caps_memory;
mod filters;
mod operation_families;
mod recorder_installed_later;

#[test]
fn the_process_wide_checks_in_order() {
    // First: the peak resident memory must not include what another step allocated.
    caps_memory::memory_follows_the_values_seen_not_the_caps();
    // The maximum level is the highest of every live subscriber's: here, only its own.
    filters::per_layer_filters_keep_requests_and_global_ones_hide_them();
    // Last: once installed, the global recorder stays for the life of the process.
    recorder_installed_later::handles_follow_the_recorder_installed_later();
    // Then the operation families, which stay on once asked for.
    operation_families::nothing_until_asked_then_every_request_by_operation_and_provider();
    operation_families::an_allowlisted_provider_is_read_from_its_label();
    operation_families::operation_series_are_capped_with_the_label_sets();
}
