//! Who owns a model and who may use it.
//!
//! Every model (a cf model name in `persona.cf_active`, a text model in
//! `persona.bert_model_store`) has an owner, the roles it was granted to, and a flag for PUBLIC.
//! **Use** is enforced by PostgreSQL itself: row-level security on the model tables
//! (sql/tables.sql) hides every row the current role may not use, and every read of a model for
//! use runs as the caller, so the per-backend caches cannot serve a model to a role that may not
//! read it (their resolutions are per transaction *and* role: [`crate::txn_cache`]).
//!
//! **Changes** are made here: the model tables have no write policies, so only their owner (the
//! extension owner) writes them. A function that creates, replaces, deploys, drops or grants a
//! model first checks the caller ([`check_create`], [`check_owner`]), then writes as the tables'
//! owner ([`as_store_owner`]) with the caller recorded as `created_by`, so neither the owner nor
//! `created_by` can be claimed falsely, and no role replaces another's model.
//!
//! **Role OIDs never leave the node.** Owners and grantees are stored as `regrole`, but on Citus
//! the model tables are reference tables whose rows are read on whichever node holds a copy, and
//! a role has a different OID on every node. So every query here sends roles as names (cast to
//! `regrole` where the row is) and gets back names and booleans computed next to the row, never
//! an OID.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::error::{raise, raise_hint};
use crate::spi::{select_one, write};

/// The two kinds of stored model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Collaborative-filtering models: one row per name in `persona.cf_active`.
    Cf,
    /// Text models: one row per name in `persona.bert_model_store`.
    Text,
    /// Portrait models: one row per name in `persona.profile_active`.
    Profile,
}

impl Store {
    /// The table with one row per model name, holding its owner and grants.
    fn table(self) -> &'static str {
        match self {
            Store::Cf => "persona.cf_active",
            Store::Text => "persona.bert_model_store",
            Store::Profile => "persona.profile_active",
        }
    }
    fn name_column(self) -> &'static str {
        match self {
            Store::Cf | Store::Profile => "model",
            Store::Text => "name",
        }
    }
    /// The table whose INSERT privilege is the right to create models of this kind.
    fn create_table(self) -> &'static str {
        match self {
            Store::Cf => "persona.cf_model_versions",
            Store::Text => "persona.bert_model_store",
            Store::Profile => "persona.profile_model_versions",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Store::Cf => "model",
            Store::Text => "text model",
            Store::Profile => "portrait model",
        }
    }
    fn grant_function(self) -> &'static str {
        match self {
            Store::Cf => "cf_model_grant",
            Store::Text => "bert_model_grant",
            Store::Profile => "profile_model_grant",
        }
    }
}

/// A role, by OID and name.
#[derive(Debug, Clone)]
pub struct Role {
    pub oid: pg_sys::Oid,
    pub name: String,
}

impl Role {
    /// The role as `regrole` input (its name, quoted where needed): how a write names it.
    pub fn regrole_input(&self) -> String {
        quote_ident(&self.name)
    }
}

/// `name` quoted as an SQL identifier where needed (PostgreSQL's `quote_identifier`).
fn quote_ident(name: &str) -> String {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: backend thread; quote_identifier returns its argument or a palloc'd copy, both
    // valid until we copy them out here.
    unsafe {
        CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}

/// The role whose privileges apply now (`current_user`).
pub fn current_role() -> Role {
    // SAFETY: backend thread; GetUserId is always valid in a transaction, and
    // GetUserNameFromId with noerr = false raises for an unknown role instead of returning NULL.
    unsafe {
        let oid = pg_sys::GetUserId();
        let name = CStr::from_ptr(pg_sys::GetUserNameFromId(oid, false))
            .to_string_lossy()
            .into_owned();
        Role { oid, name }
    }
}

/// Restores the user id and security context saved by [`as_store_owner`].
struct Restore {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: backend thread; restores exactly what GetUserIdAndSecContext returned. Also
        // right while an ERROR unwinds: the (sub)transaction abort would restore the same.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// The owner of the model tables (the extension's owner).
fn store_owner() -> pg_sys::Oid {
    select_one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class \
         WHERE oid = 'persona.cf_active'::pg_catalog.regclass",
        &[],
        "the owner of persona.cf_active",
    )
    .unwrap_or_else(|| {
        raise(
            ERRCODE_INTERNAL_ERROR,
            "persona.cf_active has no owner",
            None,
        )
    })
}

/// Runs `f` as the owner of the model tables, as a `SECURITY DEFINER` function would (SET ROLE
/// is refused meanwhile), then switches back, also when `f` raises. For the extension's own
/// writes and for decisions that must see rows the caller may not use; `f` must run only the
/// extension's own fixed SQL (`crate::spi` helpers, which fix the search path).
pub fn as_store_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = store_owner();
    let mut saved = Restore {
        user: pg_sys::InvalidOid,
        context: 0,
    };
    // SAFETY: backend thread; the pair PostgreSQL's fmgr_security_definer uses.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved.user, &mut saved.context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved.context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let _restore = saved;
    f()
}

/// Whether this database's catalog has model owners (0.3.0 or later). A newer library serves
/// an older catalog's reads until `ALTER EXTENSION pg_persona UPDATE`, but changes no model.
fn catalog_has_owners() -> bool {
    crate::spi::catalog_has_column("persona.cf_active", "owner")
}

/// Raises 55000 unless the catalog is recent enough to change models in.
fn check_catalog() {
    if !catalog_has_owners() {
        raise_hint(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the pg_persona catalog in this database is older than its library",
            "Run ALTER EXTENSION pg_persona UPDATE; (models are read until then, but not changed).",
        );
    }
}

/// A model's owner as seen by the current role.
struct Owner {
    /// Its name (its number if the role was dropped).
    name: String,
    /// Whether the current role has the owner's privileges (is it, a member that inherits it, or
    /// a superuser): PostgreSQL's rule for acting as an object's owner.
    acted_as: bool,
}

/// The owner of model `name`, seen past row-level security; `None` if there is no such model
/// (or the catalog is older than owners).
fn owner_of(store: Store, name: &str) -> Option<Owner> {
    if !catalog_has_owners() {
        return None;
    }
    stored_owner(store, name)
}

/// [`owner_of`] on a catalog known to have owners. Both answers are computed where the row is
/// read (the caller named by name: [`Role::regrole_input`]).
fn stored_owner(store: Store, name: &str) -> Option<Owner> {
    let query = format!(
        "SELECT owner::pg_catalog.text, \
           pg_catalog.pg_has_role($2::pg_catalog.regrole::pg_catalog.oid, \
                                  owner::pg_catalog.oid, 'USAGE') \
         FROM {} WHERE {} = $1",
        store.table(),
        store.name_column()
    );
    let me = current_role().regrole_input();
    as_store_owner(|| {
        Spi::connect(|client| {
            let r = crate::spi::first(client, &query, &[name.into(), me.into()], store.table())?;
            use crate::spi::Columns;
            Some(Owner {
                name: r.column::<String>(1, "owner")?,
                acted_as: r.column::<bool>(2, "acts as owner").unwrap_or(false),
            })
        })
    })
}

/// Raises 42501 unless the current role may create models of this kind: it has INSERT on the
/// kind's table (granted by the extension owner), though only pg_persona's functions write it.
pub fn check_create(store: Store) {
    check_catalog();
    let allowed = select_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, 'INSERT')",
        &[store.create_table().into()],
        store.create_table(),
    )
    .unwrap_or(false);
    if !allowed {
        let me = current_role();
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to create {}s", store.noun()),
            format!(
                "Role {} needs INSERT on {} (GRANT INSERT ON {} TO {}; by the extension's owner).",
                me.name,
                store.create_table(),
                store.create_table(),
                me.name
            ),
        );
    }
}

/// Raises 42501 unless the current role acts as the owner of existing model `name`; `action`
/// says what it tried ("replace", "drop", "deploy a version of", "grant"). Returns whether the
/// model exists.
pub fn check_owner(store: Store, name: &str, action: &str) -> bool {
    check_catalog();
    let Some(owner) = stored_owner(store, name) else {
        return false;
    };
    if !owner.acted_as {
        let owner = owner.name;
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "cannot {action} {} \"{name}\": it belongs to role {owner}",
                store.noun()
            ),
            format!(
                "Only its owner (or a member of {owner}, or a superuser) can.{}",
                if action.starts_with("train") || action == "replace" {
                    " Use another name for a model of your own."
                } else {
                    ""
                }
            ),
        );
    }
    true
}

/// Raises the error for a model the current role cannot see: 42501 when it exists but is not
/// usable by this role, else nothing (the caller raises its own "does not exist").
pub fn check_usable(store: Store, name: &str) {
    if let Some(owner) = owner_of(store, name) {
        let me = current_role();
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for {} \"{name}\"", store.noun()),
            format!(
                "Its owner {} (or a superuser) can let role {} use it: SELECT {}('{name}', '{}');",
                owner.name,
                me.name,
                store.grant_function(),
                me.name
            ),
        );
    }
}

/// A grantee: a role (as `regrole` input), or PUBLIC.
enum Grantee {
    Public,
    Role(String),
}

fn grantee(role: &str) -> Grantee {
    if role.eq_ignore_ascii_case("public") {
        return Grantee::Public;
    }
    let found = if role.is_empty() {
        None
    } else {
        select_one::<String>(
            "SELECT pg_catalog.to_regrole(pg_catalog.quote_ident($1))::pg_catalog.text",
            &[role.into()],
            "pg_catalog.pg_authid",
        )
    };
    match found {
        Some(role) => Grantee::Role(role),
        None => raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{role}\" does not exist"),
            "Name an existing role (as spelt in pg_roles.rolname), or PUBLIC for every role.",
        ),
    }
}

/// Grants (`grant`) or revokes the use of model `name` to or from `role`; returns who may use
/// it now besides its owner (`PUBLIC` first).
pub fn change_use(store: Store, name: &str, role: &str, grant: bool) -> Vec<String> {
    let action = if grant { "grant" } else { "revoke" };
    if !check_owner(store, name, &format!("{action} the use of")) {
        let noun = store.noun();
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("{noun} \"{name}\" does not exist"),
            match store {
                Store::Cf => "List models with SELECT model FROM persona.cf_models.",
                Store::Text => "List text models with SELECT name FROM persona.bert_models.",
                Store::Profile => {
                    "List portrait models with SELECT model FROM persona.profile_models."
                }
            },
        );
    }
    let (table, column) = (store.table(), store.name_column());
    let grantee = grantee(role);
    let set = match (&grantee, grant) {
        (Grantee::Public, grant) => format!("usable_by_all = {grant}"),
        (Grantee::Role(_), grant) => {
            let role = "$2::pg_catalog.regrole";
            let kept = format!("pg_catalog.array_remove(usable_by, {role})");
            if grant {
                format!("usable_by = {kept} OPERATOR(pg_catalog.||) {role}")
            } else {
                format!("usable_by = {kept}")
            }
        }
    };
    // The change, then who may use it: Citus refuses the cast to text (not immutable) in the
    // RETURNING clause of a write to a reference table.
    let update = format!("UPDATE {table} SET {set} WHERE {column} = $1");
    let query = format!(
        "SELECT CASE WHEN usable_by_all THEN '{{PUBLIC}}'::text[] ELSE '{{}}' END \
           OPERATOR(pg_catalog.||) usable_by::text[] FROM {table} WHERE {column} = $1"
    );
    let role = match grantee {
        Grantee::Public => None,
        Grantee::Role(r) => Some(r),
    };
    as_store_owner(|| {
        write(&update, &[name.into(), role.into()], table);
        select_one::<Vec<String>>(&query, &[name.into()], table)
    })
    .unwrap_or_default()
}
