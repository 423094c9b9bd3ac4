"""Sorts `perf script` samples of a Kindling server into the hops of an HTTP request.

    python3 bench/hops.py STACKS REQUESTS SERVER_CPU_SECONDS

STACKS is `perf script --no-inline -F comm,tid,ip,sym,dso` output with call graphs. A sample
belongs to the hop of the innermost frame of its stack (leaf first) that a rule below names;
frames no rule names (malloc, memcpy, the kernel's own) count for the hop that called them.
A stack that ends in code perf cannot name (JIT-compiled WebAssembly does not unwind) is the
guest's. The per-request cost of a hop is its share of the server's CPU time over the
requests served in the same window.
"""
import collections
import re
import sys

# (hop, pattern on the symbol), checked in this order for each frame, leaf first.
RULES = [
    ("store drop: instance back to the pool, memory reset",
     r"drop_in_place<wasmtime::runtime::store|reset_with_pagemap|deallocate_memor|"
     r"deallocate_tables|StoreOpaque as core::ops::drop|Store<.*> as core::ops::drop|"
     r"decommit|PoolingInstanceAllocator.*deallocate"),
    ("instantiation", r"instantiate|Instantiator|allocate_memor|allocate_tables|"
     r"PoolingInstanceAllocator.*allocate|initialize_instance|InstanceAllocator"),
    ("store and WASI context creation",
     r"component_store|module_store|Store<.*>::new|StoreInner.*new|WasiCtxBuilder|"
     r"new_incoming_request|new_response_outparam|HostState.*::new|prepare_instance"),
    ("WASI host calls made by the guest",
     r"wasmtime_wasi_http::p2::host|wasmtime_wasi_http::p3::host|wasmtime_wasi::p2::host|"
     r"wasmtime_wasi::p3|wasmtime_wasi::|wasmtime_wasi_http::p2::types_impl|"
     r"wasmtime::runtime::component::func::host|ResourceTable"),
    ("component-model calls and task bookkeeping",
     r"wasmtime::runtime::component::concurrent|wasmtime::runtime::component::func|"
     r"wasmtime::runtime::func|call_async|on_fiber|wasmtime_fiber|fiber"),
    ("body plumbing: channels, guest task, copies",
     r"wasmtime_wasi_http::p2::body|wasmtime_wasi_http::p3::body|HostIncomingBody|"
     r"HostOutgoingBody|kindling_runtime::exchange|kindling_runtime::body|"
     r"tokio::sync::mpsc|tokio::sync::oneshot|Box<dyn http_body|http_body_util"),
    ("admission and dispatch", r"kindling_scheduler|kindling_node::gate|kindling_node::dispatch|"
     r"kindling_node::invoke|kindling_node::entry|kindling_access|kindling_node::node"),
    ("metrics, logs and tracing", r"prometheus|kindling_node::metrics|kindling_telemetry|"
     r"tracing_core|tracing_subscriber|tracing::span|opentelemetry"),
    ("routing (axum, request id, auth)", r"axum|kindling_gateway::router|kindling_gateway::invoke|"
     r"kindling_gateway::request_id|kindling_gateway::auth|matchit|tower"),
    ("response write", r"hyper::proto::h1::role::.*encode|hyper::proto::h1::io::.*flush|"
     r"hyper::proto::h1::conn::Conn.*write|hyper::proto::h1::encode|poll_write|writev|"
     r"tcp_sendmsg|__sys_sendto|ksys_write"),
    ("accept and parse", r"hyper::proto::h1::role::.*parse|hyper::proto::h1::io::.*read|"
     r"hyper::proto::h1::conn::Conn.*read|httparse|poll_read|tcp_recvmsg|ksys_read|accept|"
     r"kindling_gateway::server"),
    ("other hyper connection work", r"hyper::|hyper_util::"),
    ("tokio scheduling and timers", r"tokio::runtime|tokio::time|epoll|mio::|futex|schedule|"
     r"__schedule|finish_task_switch"),
    ("the guest's code (JIT frames)", r"^\[unknown\]$|wasm\[|wasm-function|array_to_wasm|"
     r"wasm_to_array|trampoline"),
]
COMPILED = [(hop, re.compile(pattern)) for hop, pattern in RULES]


def samples(path):
    """Yields the stack (list of (symbol, dso), leaf first) of each sample."""
    stack = []
    with open(path, errors="replace") as lines:
        for line in lines:
            if not line.strip():
                if stack:
                    yield stack
                stack = []
                continue
            if not line[0].isspace():
                stack = []
                continue
            frame = line.strip().split(None, 1)
            rest = frame[1] if len(frame) > 1 else "[unknown]"
            symbol, _, dso = rest.rpartition(" (")
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol or rest)
            stack.append((symbol, dso.rstrip(")")))
    if stack:
        yield stack


def hop_of(stack):
    for symbol, dso in stack:
        for hop, pattern in COMPILED:
            if pattern.search(symbol):
                return hop, symbol
    leaf = stack[0]
    if leaf[0] == "[unknown]" and "kindling" not in leaf[1]:
        return "the guest's code (JIT frames)", leaf[0]
    return "unclassified", leaf[0]


def main():
    path, requests, cpu_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    hops = collections.Counter()
    leaves = collections.defaultdict(collections.Counter)
    total = 0
    for stack in samples(path):
        hop, symbol = hop_of(stack)
        hops[hop] += 1
        leaves[hop][symbol] += 1
        total += 1
    if total == 0:
        sys.exit("hops: no samples (is perf allowed to sample this process?)")
    per_request_us = cpu_seconds * 1e6 / max(requests, 1)
    print(f"{requests:,} requests, server CPU {cpu_seconds:.2f} s = "
          f"{per_request_us:.1f} us a request, {total:,} samples\n")
    print("| hop | share of samples | us per request |")
    print("| --- | --- | --- |")
    for hop, count in hops.most_common():
        share = count / total
        print(f"| {hop} | {100 * share:.1f}% | {share * per_request_us:.1f} |")
    print("\nTop symbols of each hop (the frame that decided it):")
    for hop, _ in hops.most_common():
        top = ", ".join(f"{s[:70]} {100 * c / total:.1f}%" for s, c in leaves[hop].most_common(4))
        print(f"- {hop}: {top}")


if __name__ == "__main__":
    main()
