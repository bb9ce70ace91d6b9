//! Tests of what a process has once: the global recorder slot (`install`) and its list of
//! threads (`threads`). They run one after the other, in one test, so that no other test
//! of the binary installs a recorder or starts a thread meanwhile.

mod install;
#[cfg(target_os = "linux")]
mod threads;

#[test]
fn the_process_wide_checks_in_order() {
    // First: the thread count must not see the installed recorder's listener.
    #[cfg(target_os = "linux")]
    threads::the_recorder_runs_no_thread_and_the_listener_s_goes_with_its_handle();
    install::install_serves_the_global_recorder_and_refuses_a_second();
}
