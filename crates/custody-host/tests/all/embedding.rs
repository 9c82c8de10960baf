//! Host functions of the embedder's own: the same marshalling as the ABI,
//! host-protection categories, and host locks that escalate an abort.

use std::sync::Arc;
use std::time::Duration;

use custody_handle::Fd;
use custody_host::abi::AbiError;
use custody_host::{
    Action, CallError, Category, DomainConfig, GuestCall, Host, HostLock, LoadError, Policy, Val,
    ValType,
};
use custody_testkit::serial;

static SHARED_COUNTER: HostLock<i32> = HostLock::new_const(0);

fn host(policy: Policy) -> Host {
    custody_testkit::quiet();
    Host::builder(policy)
        .log(Arc::new(|_, _, _| {}))
        .func_wrap(
            "env",
            "locked_wait",
            &[Category::SharedState, Category::Synchronization],
            |call: &mut GuestCall<'_>, ms: i32| -> Result<i32, AbiError> {
                let mut counter = SHARED_COUNTER.lock(call);
                *counter += 1;
                call.sleep(Duration::from_millis(ms as u64))?;
                Ok(*counter)
            },
        )
        .func_wrap(
            "env",
            "unlocked_wait",
            &[Category::Synchronization],
            |call: &mut GuestCall<'_>, ms: i32| -> Result<i32, AbiError> {
                call.sleep(Duration::from_millis(ms as u64))?;
                Ok(0)
            },
        )
        .func_wrap("env", "fd_of", &[], |call: &mut GuestCall<'_>, id: i32| {
            Ok(match call.handle::<Fd>(id) {
                Ok(fd) => fd.raw(),
                Err(e) => e.code(),
            })
        })
        // The untyped form, for signatures known only at run time.
        .func_new(
            "env",
            "echo",
            &[],
            &[ValType::I32, ValType::I32],
            &[],
            |call, params, _| {
                let bytes = call.read(params[0].unwrap_i32(), params[1].unwrap_i32())?;
                call.write(params[0].unwrap_i32() + 100, &bytes)
            },
        )
        .build()
        .unwrap()
}

const GUEST: &str = r#"
(module
  (import "env" "locked_wait" (func $locked_wait (param i32) (result i32)))
  (import "env" "unlocked_wait" (func $unlocked_wait (param i32) (result i32)))
  (import "env" "fd_of" (func $fd_of (param i32) (result i32)))
  (import "env" "echo" (func $echo (param i32 i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "marshalled")
  (func (export "locked_wait") (param i32) (result i32) (call $locked_wait (local.get 0)))
  (func (export "unlocked_wait") (param i32) (result i32) (call $unlocked_wait (local.get 0)))
  (func (export "pipe_fd") (result i32)
    (drop (call $pipe (i32.const 0) (i32.const 4)))
    (call $fd_of (i32.load (i32.const 0))))
  (func (export "fd_of") (param i32) (result i32) (call $fd_of (local.get 0)))
  (func (export "echo") (call $echo (i32.const 200) (i32.const 10)))
  (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0)))
)
"#;

fn domain(host: &Host) -> custody_host::Domain {
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("guest", &module).unwrap();
    domain
}

fn call(domain: &custody_host::Domain, name: &str, args: &[i32]) -> Result<i32, CallError> {
    let args: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
    domain
        .call(name, &args)
        .map(|r| r.first().map_or(0, |v| v.unwrap_i32()))
}

#[test]
fn an_abort_while_holding_a_host_lock_recycles_the_domain() {
    let _serial = serial();
    let host = host(Policy {
        deadline: Some(Duration::from_millis(100)),
        ..Policy::default()
    });
    let domain = domain(&host);
    assert!(
        call(&domain, "locked_wait", &[1]).unwrap() >= 1,
        "a short locked wait is fine"
    );
    call(&domain, "pipe_fd", &[]).unwrap();
    match call(&domain, "locked_wait", &[5000]) {
        Err(CallError::Escalated {
            action,
            reason,
            released,
            ..
        }) => {
            assert_eq!(action, Action::RecycleDomain);
            assert!(reason.contains("while holding a host lock"), "{reason}");
            assert_eq!(released, 2);
        }
        other => panic!("expected Escalated, got {other:?}"),
    }
    // The same abort with no lock held fails only the call.
    match call(&domain, "unlocked_wait", &[5000]) {
        Err(CallError::Aborted { reason, .. }) => assert!(reason.contains("deadline"), "{reason}"),
        other => panic!("expected Aborted, got {other:?}"),
    }
}

#[test]
fn embedder_functions_marshal_handles_and_memory_like_the_abi() {
    let _serial = serial();
    let host = host(Policy::default());
    let domain = domain(&host);
    assert!(
        call(&domain, "pipe_fd", &[]).unwrap() >= 0,
        "a live handle resolves to its fd"
    );
    assert_eq!(call(&domain, "fd_of", &[0]).unwrap(), AbiError::Null.code());
    assert_eq!(
        call(&domain, "fd_of", &[12345]).unwrap(),
        AbiError::Stale.code()
    );
    call(&domain, "echo", &[]).unwrap();
    let copied: String = (300..310)
        .map(|at| call(&domain, "load8", &[at]).unwrap() as u8 as char)
        .collect();
    assert_eq!(copied, "marshalled");
}

#[test]
fn embedder_functions_carry_categories_checked_at_load() {
    let _serial = serial();
    let host = host(Policy {
        denied: vec![Category::SharedState],
        ..Policy::default()
    });
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    match domain.load("guest", &module) {
        Err(LoadError::Denied {
            module,
            name,
            category,
        }) => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "locked_wait"));
            assert_eq!(category, Category::SharedState);
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[test]
fn the_custody_module_is_reserved() {
    let _serial = serial();
    let result = Host::builder(Policy::default())
        .func_wrap("custody", "open", &[], |_: &mut GuestCall<'_>, _: i32| {
            Ok(0)
        })
        .build();
    assert!(result.is_err());
}
