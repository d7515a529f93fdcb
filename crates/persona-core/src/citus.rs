//! Where a pg_persona function runs on a Citus cluster, and what it may read there.
//!
//! Citus pushes a query over a distributed table down to the worker nodes, function calls
//! included: `SELECT sum(cf_predict(user_id, item_id)) FROM ratings` runs `cf_predict` on every
//! worker, inside a *task* (a query on one shard, sent by the coordinator over a connection whose
//! `application_name` starts with [`TASK_APPLICATION_NAME_PREFIX`]). There, a relation is one of
//! three kinds ([`Relation`]), and the rule of [`read_in`] says how a function may read it:
//!
//! - a **local** table (not known to Citus) holds this node's rows only: on a worker that is not
//!   the coordinator's data (pg_persona's own tables are created empty on every node by
//!   `CREATE EXTENSION`), so reading it inside a task would give a silently wrong answer: refused;
//! - a **reference** table (every model table after `persona.distribute()`) is the same on every
//!   node, and a **distributed** table is Citus's to gather: both are read with Citus's nested
//!   execution allowed, around that read only;
//! - outside a task (a client's own query, on the coordinator or on a single server) everything
//!   is read as usual.

/// How Citus names the connections over which it sends tasks (Citus's
/// `CITUS_APPLICATION_NAME_PREFIX`): a backend whose `application_name` starts with this runs a
/// query on a shard.
pub const TASK_APPLICATION_NAME_PREFIX: &str = "citus_internal gpid=";

/// Whether a backend with this `application_name` runs a Citus task.
pub fn is_task(application_name: &str) -> bool {
    application_name.starts_with(TASK_APPLICATION_NAME_PREFIX)
}

/// How a relation is stored on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// A plain table (or view) Citus does not manage: this node's rows only.
    Local,
    /// A Citus reference table: every node holds all of it.
    Reference,
    /// A Citus distributed table (or another kind Citus manages and can gather).
    Distributed,
}

/// How a function may read a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// As usual.
    Plain,
    /// With Citus's nested distributed execution allowed around the read.
    Nested,
    /// Not at all: the answer would come from rows that are not the data.
    Refused,
}

/// The rule: how a function running inside a Citus task (`in_task`) or not may read a relation
/// of kind `relation`.
pub fn read_in(in_task: bool, relation: Relation) -> Read {
    match (in_task, relation) {
        (false, _) => Read::Plain,
        (true, Relation::Local) => Read::Refused,
        (true, Relation::Reference | Relation::Distributed) => Read::Nested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_recognised_by_its_application_name() {
        assert!(is_task("citus_internal gpid=10000000123"));
        assert!(!is_task("psql"));
        assert!(!is_task(""));
        // Only as a prefix, as Citus checks it.
        assert!(!is_task("my citus_internal gpid=1"));
    }

    #[test]
    fn inside_a_task_only_local_tables_are_refused() {
        for r in [Relation::Local, Relation::Reference, Relation::Distributed] {
            assert_eq!(read_in(false, r), Read::Plain);
        }
        assert_eq!(read_in(true, Relation::Local), Read::Refused);
        assert_eq!(read_in(true, Relation::Reference), Read::Nested);
        assert_eq!(read_in(true, Relation::Distributed), Read::Nested);
    }
}
