//! Unit tests of the diagnostics: the assistants and the list syntax, the
//! JSON form and `detail`, and the `tracing` events.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::*;

/// Serializes the tests that change which assistants are enabled (a
/// process-wide setting), so that one test's toggle cannot hide another's
/// diagnostic.
pub(crate) fn enabled_set_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn defaults_exclude_only_handle_finalized() {
    let d = EnabledSet::defaults();
    for a in Assistant::ALL {
        assert_eq!(d.contains(a), a != Assistant::HandleFinalized, "{a}");
    }
}

#[test]
fn spec_lists_apply_left_to_right() {
    let d = EnabledSet::defaults();
    let none = d.apply("none").unwrap();
    assert!(Assistant::ALL.iter().all(|&a| !none.contains(a)));
    let all = d.apply("all").unwrap();
    assert!(Assistant::ALL.iter().all(|&a| all.contains(a)));

    let one = d.apply("none,releaseHandleFailed").unwrap();
    assert!(one.contains(Assistant::ReleaseHandleFailed));
    assert!(!one.contains(Assistant::StaleHandleUse));

    let minus = d.apply("all, -staleHandleUse").unwrap();
    assert!(minus.contains(Assistant::HandleFinalized));
    assert!(!minus.contains(Assistant::StaleHandleUse));

    let plus = d.apply("handlefinalized").unwrap();
    assert!(
        plus.contains(Assistant::HandleFinalized),
        "names are case-insensitive"
    );

    assert_eq!(d.apply("").unwrap(), d);
    assert_eq!(d.apply(" , ,").unwrap(), d);
}

#[test]
fn unknown_names_are_rejected_whole() {
    let err = EnabledSet::defaults()
        .apply("none,releaseHandleFailed,bogus")
        .unwrap_err();
    assert_eq!(err, UnknownAssistant("bogus".into()));
    assert!(err.to_string().contains("releaseHandleFailed"));
}

#[test]
fn names_round_trip() {
    for a in Assistant::ALL {
        assert_eq!(Assistant::from_name(a.name()), Some(a));
    }
    assert_eq!(Assistant::from_name("nope"), None);
}

#[test]
fn json_form_names_fields() {
    let d = Diagnostic::new(Assistant::ReleaseHandleFailed, "msg")
        .with_handle("my::Type", 0xBEEF)
        .with_error(&io::Error::from_raw_os_error(libc::EBADF));
    let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(v["assistant"], "releaseHandleFailed");
    assert_eq!(v["raw_hex"], "0x0000BEEF");
    assert_eq!(v["raw_value"], 0xBEEF);
    assert_eq!(v["errno"], libc::EBADF);
    assert_eq!(v["handle_type"], "my::Type");
    assert!(v.get("domain").is_none(), "absent fields are omitted");
    assert!(v.get("detail").is_none(), "absent fields are omitted");
}

#[test]
fn the_host_assistants_for_forced_unload_and_leaked_domains_are_on_by_default() {
    for (assistant, name) in [
        (Assistant::UnloadForced, "unloadForced"),
        (Assistant::DomainLeaked, "domainLeaked"),
        (Assistant::MemoryLimitReached, "memoryLimitReached"),
    ] {
        assert_eq!(assistant.name(), name);
        assert_eq!(Assistant::from_name(name), Some(assistant));
        assert!(assistant.enabled_by_default(), "{name}");
        assert!(EnabledSet::defaults().contains(assistant), "{name}");
        let off = EnabledSet::defaults().apply(&format!("-{name}")).unwrap();
        assert!(!off.contains(assistant));
    }
    let known = UnknownAssistant("bogus".into()).to_string();
    for a in Assistant::ALL {
        assert!(known.contains(a.name()), "{known} lists {a}");
    }
}

#[test]
fn detail_carries_host_defined_data_in_json_and_in_the_report() {
    let d = Diagnostic::new(Assistant::UnloadForced, "domain 7 was forced")
        .with_call(7, "run", "unload timeout")
        .with_detail(serde_json::json!({"calls_aborted": 2, "handles_deferred": ["a", "b"]}));
    let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(v["assistant"], "unloadForced");
    assert_eq!(v["detail"]["calls_aborted"], 2);
    assert_eq!(v["detail"]["handles_deferred"][1], "b");
    let report = d.render();
    assert!(report.contains("  detail: {"), "{report}");
    assert!(report.contains("\"calls_aborted\":2"), "{report}");
}

/// One `tracing` event, as a test subscriber saw it.
#[derive(Debug)]
struct Seen {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

/// A minimal `tracing` subscriber that keeps every event.
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            target: event.metadata().target().to_string(),
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with a `tracing` subscriber on this thread and returns the
/// events it saw.
fn traced(f: impl FnOnce()) -> Vec<Seen> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(Recorder(Arc::clone(&seen)), || {
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    std::mem::take(&mut *seen.lock().unwrap())
}

#[test]
fn a_fired_diagnostic_is_also_a_tracing_event_with_structured_fields() {
    capture_for_tests();
    let events = traced(|| {
        fire(Assistant::ReleaseHandleFailed, || {
            Diagnostic::new(Assistant::ReleaseHandleFailed, "release failed")
                .with_handle("my::Type", 0xBEEF)
                .with_error(&io::Error::from_raw_os_error(libc::EBADF))
                .with_handle_id(crate::id::HandleId::from_raw(0x10_0003))
                .with_call(42, "guest_fn", "trap")
        });
    });
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.target, "custody::diagnostics");
    assert_eq!(e.target, TRACING_TARGET);
    assert_eq!(e.level, tracing::Level::WARN);
    let field = |name: &str| e.fields.get(name).map(String::as_str);
    assert_eq!(field("assistant"), Some("releaseHandleFailed"));
    assert_eq!(field("message"), Some("release failed"));
    assert_eq!(field("domain"), Some("42"));
    assert_eq!(field("handle_id"), Some("1048579"));
    assert_eq!(field("handle_type"), Some("my::Type"));
    assert_eq!(field("raw_hex"), Some("0x0000BEEF"));
    assert_eq!(field("errno"), Some(libc::EBADF.to_string().as_str()));
    assert_eq!(field("function"), Some("guest_fn"));
    assert_eq!(field("reason"), Some("trap"));
}

#[test]
fn absent_fields_are_absent_from_the_tracing_event() {
    capture_for_tests();
    let events = traced(|| {
        fire(Assistant::DomainLeaked, || {
            Diagnostic::new(Assistant::DomainLeaked, "domain 9 is still unloading")
        });
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].level, tracing::Level::WARN);
    let names: Vec<&str> = events[0].fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["assistant", "message"]);
}

#[test]
fn tracing_levels_are_info_for_handle_finalized_and_warn_otherwise() {
    capture_for_tests();
    let _lock = enabled_set_lock();
    let was = is_enabled(Assistant::HandleFinalized);
    set_enabled(Assistant::HandleFinalized, true);
    let events = traced(|| {
        for a in Assistant::ALL {
            fire(a, || Diagnostic::new(a, "level check"));
        }
    });
    set_enabled(Assistant::HandleFinalized, was);
    let levels: Vec<(String, tracing::Level)> = events
        .iter()
        .map(|e| (e.fields["assistant"].clone(), e.level))
        .collect();
    let expected: Vec<(String, tracing::Level)> = Assistant::ALL
        .into_iter()
        .map(|a| {
            let level = if a == Assistant::HandleFinalized {
                tracing::Level::INFO
            } else {
                tracing::Level::WARN
            };
            (a.name().to_string(), level)
        })
        .collect();
    assert_eq!(levels, expected);
}

#[test]
fn a_disabled_assistant_emits_no_tracing_event_but_is_counted() {
    capture_for_tests();
    let _lock = enabled_set_lock();
    let was = is_enabled(Assistant::HandleFinalized);
    set_enabled(Assistant::HandleFinalized, false);
    let before = count(Assistant::HandleFinalized);
    let events = traced(|| {
        fire(Assistant::HandleFinalized, || {
            Diagnostic::new(Assistant::HandleFinalized, "not emitted")
        });
    });
    set_enabled(Assistant::HandleFinalized, was);
    assert!(events.is_empty(), "{events:?}");
    assert!(count(Assistant::HandleFinalized) > before);
}

#[test]
fn a_tracing_event_is_emitted_with_the_stderr_sink_off() {
    capture_for_tests(); // turns the stderr sink off
    let events = traced(|| {
        fire(Assistant::CallAborted, || {
            Diagnostic::new(Assistant::CallAborted, "aborted").with_call(1, "f", "deadline")
        });
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].fields["assistant"], "callAborted");
}

#[test]
fn a_bounded_collector_keeps_the_newest_and_counts_the_rest() {
    let _enabled = enabled_set_lock();
    capture_for_tests();
    let collector = Collector::bounded(3);
    let marker = "bounded-collector-test";
    for i in 0..10 {
        fire(Assistant::CallAborted, || {
            Diagnostic::new(Assistant::CallAborted, format!("{marker} {i}"))
        });
    }
    let kept: Vec<String> = collector
        .matching(|d| d.message.starts_with(marker))
        .into_iter()
        .map(|d| d.message)
        .collect();
    // Other tests may fire meanwhile: what is kept is the newest of all.
    assert!(kept.len() <= 3);
    assert!(collector.dropped() >= 7, "{}", collector.dropped());
    if let Some(last) = kept.last() {
        assert_eq!(last, &format!("{marker} 9"));
    }
}
