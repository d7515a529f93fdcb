//! Running on a Citus cluster: recognising a Citus task, reading the model tables from one, and
//! refusing reads that would give a worker's empty local tables as the answer. The rule is
//! `persona_core::citus`; `persona.distribute()` (sql/finalize.sql) makes the model tables
//! reference tables.
//!
//! Nothing here costs anything outside a task: the check is a prefix comparison of
//! `application_name`. A regression test simulates a task by setting that name.

use std::ffi::CStr;

use persona_core::citus::{is_task, read_in, Read, Relation};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::error::raise_hint;
use crate::spi::{select_one, ScopedSetting};

/// Whether this backend runs a Citus task: a query on a shard, sent by a coordinator.
pub fn in_task() -> bool {
    // SAFETY: backend thread; `application_name` is the GUC's C string (NULL before the GUC
    // machinery set it, checked).
    unsafe {
        let p = pg_sys::application_name;
        !p.is_null() && is_task(&CStr::from_ptr(p).to_string_lossy())
    }
}

/// Citus's `citus.allow_nested_distributed_execution` on while the returned guard lives.
fn nested_allowed() -> ScopedSetting {
    ScopedSetting::set(c"citus.allow_nested_distributed_execution", c"on")
}

/// Runs `f`, a lookup of pg_persona's model tables, so that it also works inside a Citus task:
/// there the tables are reference tables (after `persona.distribute()`), the same on every node,
/// which Citus reads only with nested execution allowed; it is allowed around `f` only.
pub fn model_reads<R>(f: impl FnOnce() -> R) -> R {
    if !in_task() {
        return f();
    }
    let _allowed = nested_allowed();
    f()
}

/// How each of `relations` (names, resolved on the catalog path) is stored on this node, read in
/// one query.
fn relation_kinds(relations: &[&str]) -> Vec<Relation> {
    let citus = select_one::<bool>(
        "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
        &[],
        "pg_catalog.pg_class",
    )
    .unwrap_or(false);
    if !citus {
        return vec![Relation::Local; relations.len()];
    }
    let names: Vec<String> = relations.iter().map(|r| r.to_string()).collect();
    let methods = select_one::<Vec<Option<String>>>(
        "SELECT pg_catalog.array_agg((SELECT p.partmethod::text FROM pg_catalog.pg_dist_partition p \
                 WHERE p.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(r.name)) \
               ORDER BY r.n) \
           FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS r (name, n)",
        &[names.into()],
        "pg_catalog.pg_dist_partition",
    )
    .unwrap_or_default();
    (0..relations.len())
        .map(|i| match methods.get(i).cloned().flatten().as_deref() {
            None => Relation::Local,
            Some("n") => Relation::Reference,
            Some(_) => Relation::Distributed,
        })
        .collect()
}

/// Runs `f`, the body of `function`, which reads `relations` (pg_persona's data tables, a
/// model's orders relation). Outside a Citus task, as is. Inside one, raises 55000 naming this
/// node when a relation is a local table here (the coordinator's rows are not on this node:
/// the answer would be silently wrong), else runs `f` with nested execution allowed.
pub fn data_reads<R>(function: &str, relations: &[&str], f: impl FnOnce() -> R) -> R {
    if !in_task() {
        return f();
    }
    let _allowed = nested_allowed();
    refuse_local(function, relations);
    f()
}

/// Inside a Citus task, raises 55000 unless `relation` may be read here (see [`data_reads`]).
pub fn check_read(function: &str, relation: &str) {
    if in_task() {
        refuse_local(function, &[relation]);
    }
}

/// Raises 55000 for the first of `relations` that a function inside a Citus task may not read.
fn refuse_local(function: &str, relations: &[&str]) {
    let kinds = relation_kinds(relations);
    let Some(relation) = relations
        .iter()
        .zip(kinds)
        .find(|(_, kind)| read_in(true, *kind) == Read::Refused)
        .map(|(r, _)| *r)
    else {
        return;
    };
    raise_hint(
        ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "{function} ran on node {} inside a Citus task, where {relation} is a local \
             table that does not hold the cluster's data",
            node_name()
        ),
        format!(
            "Make {relation} a reference or distributed table on the coordinator (model \
             tables: SELECT persona.distribute();), or call {function} on the coordinator, \
             e.g. over a MATERIALIZED CTE of the distributed rows."
        ),
    );
}

/// This node as Citus knows it (`host:port` from `pg_dist_node`), else by its port.
pub fn node_name() -> String {
    let citus = select_one::<bool>(
        "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_node') IS NOT NULL \
            AND pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL",
        &[],
        "pg_catalog.pg_class",
    )
    .unwrap_or(false);
    let known = citus
        .then(|| {
            select_one::<String>(
                "SELECT n.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) \
                        n.nodeport::pg_catalog.text \
                   FROM pg_catalog.pg_dist_node n, pg_catalog.pg_dist_local_group g \
                  WHERE n.groupid OPERATOR(pg_catalog.=) g.groupid ORDER BY n.nodeid LIMIT 1",
                &[],
                "pg_catalog.pg_dist_node",
            )
        })
        .flatten();
    known.unwrap_or_else(|| {
        let port = select_one::<String>("SELECT pg_catalog.current_setting('port')", &[], "port")
            .unwrap_or_default();
        format!("with port {port}")
    })
}

/// Inside a Citus task, raises 42704 for a missing model, saying where it ran and pointing at
/// `persona.distribute()`: a worker whose model tables are not replicated has none.
pub fn raise_if_missing_on_worker(noun: &str, name: &str) {
    if !in_task() {
        return;
    }
    raise_hint(
        ERRCODE_UNDEFINED_OBJECT,
        format!(
            "{noun} \"{name}\" does not exist on node {}, where this function ran inside a Citus \
             task",
            node_name()
        ),
        "The model tables are not replicated to this node: run SELECT persona.distribute(); on \
         the coordinator (they become reference tables, on every node).",
    );
}
