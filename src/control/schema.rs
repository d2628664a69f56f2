//! The schema of an InfluxDB server as the control plane copies it:
//! databases, retention policies (duration, replication, shard duration,
//! default), continuous queries, and users with their privileges.
//!
//! [`read`] takes it from a server, [`plan`] turns the difference between
//! two schemas into the statements that make the second have everything of
//! the first (never dropping or revoking anything), [`apply`] runs them.
//! `sync-schema` is these three; `backfill` and `restore` use them for the
//! databases and retention policies the data needs; a backup's manifest
//! stores [`Database`]s.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::influx::{ident, string_literal, Influx};
use super::time::{influxql_duration, parse_go_duration};
use super::ControlError;

/// One retention policy; durations in nanoseconds (0: forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub name: String,
    pub duration_ns: i64,
    pub shard_duration_ns: i64,
    pub replication: u32,
    pub default: bool,
}

/// One continuous query and its exact text (`CREATE CONTINUOUS QUERY … END`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousQuery {
    pub name: String,
    pub query: String,
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub retention_policies: Vec<RetentionPolicy>,
    pub continuous_queries: Vec<ContinuousQuery>,
}

impl Database {
    pub fn rp(&self, name: &str) -> Option<&RetentionPolicy> {
        self.retention_policies.iter().find(|rp| rp.name == name)
    }
}

/// A privilege on one database: read (1), write (2) or both (3).
pub type Privilege = u8;
const READ: Privilege = 1;
const WRITE: Privilege = 2;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub grants: BTreeMap<String, Privilege>,
}

/// A server's schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub databases: Vec<Database>,
    /// What could not be read, with why (becomes [`Plan::skipped`]).
    pub notes: Vec<String>,
    /// `Err` with the reason when users could not be read (credentials
    /// that are not an admin's).
    pub users: Result<Vec<User>, String>,
}

impl Schema {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }
}

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Databases and retention policies only.
    Storage,
    /// Databases, retention policies and continuous queries: no users (what
    /// a router copies to a cluster that newly holds a database).
    Databases,
    /// Also continuous queries, users and privileges.
    Everything,
}

/// Reads the schema of `server`: the databases named in `only` (all but
/// `_internal` when empty; a named one that does not exist is an error).
pub async fn read(server: &Influx, only: &[String], scope: Scope) -> Result<Schema, ControlError> {
    let names = database_names(server).await?;
    let chosen: Vec<String> = if only.is_empty() {
        names.into_iter().filter(|n| n != "_internal").collect()
    } else {
        for db in only {
            if !names.contains(db) {
                return Err(ControlError::Failed(format!(
                    "{}: database {db:?} does not exist",
                    server.label()
                )));
            }
        }
        only.to_vec()
    };
    let mut notes = Vec::new();
    let mut cqs = match scope {
        Scope::Databases | Scope::Everything => match continuous_queries(server).await {
            Ok(cqs) => cqs,
            Err(e) => {
                notes.push(format!("continuous queries not copied: {e}"));
                HashMap::new()
            }
        },
        Scope::Storage => HashMap::new(),
    };
    let mut databases = Vec::with_capacity(chosen.len());
    for name in chosen {
        let retention_policies = retention_policies(server, &name).await?;
        databases.push(Database {
            continuous_queries: cqs.remove(&name).unwrap_or_default(),
            name,
            retention_policies,
        });
    }
    let users = if scope == Scope::Everything {
        users(server).await
    } else {
        Ok(Vec::new())
    };
    Ok(Schema {
        databases,
        notes,
        users,
    })
}

/// The continuous queries of `server`, by database (`SHOW CONTINUOUS QUERIES`).
pub async fn continuous_queries(
    server: &Influx,
) -> Result<HashMap<String, Vec<ContinuousQuery>>, ControlError> {
    let mut cqs: HashMap<String, Vec<ContinuousQuery>> = HashMap::new();
    for series in server.query_one(None, "SHOW CONTINUOUS QUERIES").await? {
        let list = cqs.entry(series.name.clone()).or_default();
        for row in &series.values {
            list.push(ContinuousQuery {
                name: str_of(series.get(row, "name")),
                query: str_of(series.get(row, "query")),
            });
        }
    }
    Ok(cqs)
}

/// Fails when no database of `schema` has retention policy `rp` (when one
/// is asked for): a misspelt `--rp` must not pass as "nothing to copy".
/// Databases without it are simply not read.
pub fn check_rp(schema: &Schema, rp: Option<&str>, server: &Influx) -> Result<(), ControlError> {
    let Some(rp) = rp else { return Ok(()) };
    if schema.databases.iter().any(|db| db.rp(rp).is_some()) {
        return Ok(());
    }
    let names: Vec<String> = schema
        .databases
        .iter()
        .map(|d| format!("{:?}", d.name))
        .collect();
    Err(ControlError::Failed(format!(
        "{}: no retention policy {rp:?} in database {}",
        server.label(),
        names.join(", ")
    )))
}

/// Every database on `server`.
pub async fn database_names(server: &Influx) -> Result<Vec<String>, ControlError> {
    let series = server.query_one(None, "SHOW DATABASES").await?;
    Ok(series
        .iter()
        .flat_map(|s| s.values.iter().map(|row| str_of(s.get(row, "name"))))
        .collect())
}

async fn retention_policies(
    server: &Influx,
    db: &str,
) -> Result<Vec<RetentionPolicy>, ControlError> {
    let q = format!("SHOW RETENTION POLICIES ON {}", ident(db));
    let mut out = Vec::new();
    for series in server.query_one(None, &q).await? {
        for row in &series.values {
            let duration = |col: &str| {
                parse_go_duration(series.get(row, col).as_str().unwrap_or(""))
                    .map_err(|e| ControlError::Failed(format!("{}: {db:?}: {e}", server.label())))
            };
            out.push(RetentionPolicy {
                name: str_of(series.get(row, "name")),
                duration_ns: duration("duration")?,
                shard_duration_ns: duration("shardGroupDuration")?,
                replication: series.get(row, "replicaN").as_u64().unwrap_or(1) as u32,
                default: series.get(row, "default").as_bool().unwrap_or(false),
            });
        }
    }
    Ok(out)
}

async fn users(server: &Influx) -> Result<Vec<User>, String> {
    let series = server
        .query_one(None, "SHOW USERS")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in &series {
        for row in &s.values {
            out.push(User {
                name: str_of(s.get(row, "user")),
                admin: s.get(row, "admin").as_bool().unwrap_or(false),
                grants: BTreeMap::new(),
            });
        }
    }
    for user in &mut out {
        let q = format!("SHOW GRANTS FOR {}", ident(&user.name));
        for s in server
            .query_one(None, &q)
            .await
            .map_err(|e| e.to_string())?
        {
            for row in &s.values {
                let privilege = match s.get(row, "privilege").as_str().unwrap_or("") {
                    "READ" => READ,
                    "WRITE" => WRITE,
                    "ALL PRIVILEGES" => READ | WRITE,
                    _ => 0,
                };
                if privilege != 0 {
                    user.grants
                        .insert(str_of(s.get(row, "database")), privilege);
                }
            }
        }
    }
    Ok(out)
}

fn str_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One statement of a plan; `shown` hides passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    pub shown: String,
}

impl Statement {
    fn plain(text: String) -> Statement {
        Statement {
            shown: text.clone(),
            text,
        }
    }
}

/// What it takes to bring one server's schema up to another's.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub statements: Vec<Statement>,
    /// What was left alone, with the reason (a user without a password, a
    /// CQ whose text differs, users that could not be read).
    pub skipped: Vec<String>,
}

/// Passwords for users created on the destination: `name:password` lines.
#[derive(Debug, Clone, Default)]
pub struct Passwords(HashMap<String, String>);

impl Passwords {
    /// Reads `--user-password-file`: one `name:password` per line (`#`
    /// comments and blank lines ignored).
    pub fn parse(text: &str) -> Result<Passwords, String> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (name, password) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected name:password", i + 1))?;
            map.insert(name.to_string(), password.to_string());
        }
        Ok(Passwords(map))
    }
}

/// The statements that give `dst` every database, retention policy and (for
/// [`Scope::Databases`]) continuous query and (for [`Scope::Everything`])
/// user of `src`.
pub fn plan(src: &Schema, dst: &Schema, scope: Scope, passwords: &Passwords) -> Plan {
    let mut plan = Plan::default();
    plan.skipped.extend(src.notes.iter().cloned());
    for db in &src.databases {
        plan_database(db, dst.database(&db.name), scope, &mut plan);
    }
    if scope == Scope::Everything {
        plan_users(src, dst, passwords, &mut plan);
    }
    plan
}

fn rp_settings(rp: &RetentionPolicy) -> String {
    format!(
        "DURATION {} REPLICATION {} SHARD DURATION {}",
        influxql_duration(rp.duration_ns),
        rp.replication,
        influxql_duration(rp.shard_duration_ns)
    )
}

fn plan_database(src: &Database, dst: Option<&Database>, scope: Scope, plan: &mut Plan) {
    let db = ident(&src.name);
    let empty = Database {
        name: src.name.clone(),
        retention_policies: Vec::new(),
        continuous_queries: Vec::new(),
    };
    let dst = match dst {
        Some(dst) => dst,
        None => {
            // created with SRC's default policy, so no `autogen` appears that SRC lacks
            match src.retention_policies.iter().find(|rp| rp.default) {
                Some(rp) => plan.statements.push(Statement::plain(format!(
                    "CREATE DATABASE {db} WITH {} NAME {}",
                    rp_settings(rp),
                    ident(&rp.name)
                ))),
                None => plan
                    .statements
                    .push(Statement::plain(format!("CREATE DATABASE {db}"))),
            }
            &empty
        }
    };
    let created_default = dst.retention_policies.is_empty();
    for rp in &src.retention_policies {
        if created_default && rp.default {
            continue;
        }
        let make_default = rp.default && dst.rp(&rp.name).map_or(true, |d| !d.default);
        let default = if make_default { " DEFAULT" } else { "" };
        match dst.rp(&rp.name) {
            None => plan.statements.push(Statement::plain(format!(
                "CREATE RETENTION POLICY {} ON {db} {}{default}",
                ident(&rp.name),
                rp_settings(rp)
            ))),
            Some(have) => {
                let same = have.duration_ns == rp.duration_ns
                    && have.shard_duration_ns == rp.shard_duration_ns
                    && have.replication == rp.replication;
                if !same || make_default {
                    plan.statements.push(Statement::plain(format!(
                        "ALTER RETENTION POLICY {} ON {db} {}{default}",
                        ident(&rp.name),
                        rp_settings(rp)
                    )));
                }
            }
        }
    }
    if scope != Scope::Storage {
        for cq in &src.continuous_queries {
            if !defines_cq(&cq.query, &cq.name, &src.name) {
                plan.skipped.push(format!(
                    "continuous query {:?} on {:?} not copied: its text is not one \
                     `CREATE CONTINUOUS QUERY {} ON {} …` statement: `{}`",
                    cq.name,
                    src.name,
                    ident(&cq.name),
                    ident(&src.name),
                    cq.query
                ));
                continue;
            }
            match dst.continuous_queries.iter().find(|c| c.name == cq.name) {
                None => plan.statements.push(Statement::plain(cq.query.clone())),
                Some(have) if have.query != cq.query => plan.skipped.push(format!(
                    "continuous query {:?} on {:?} differs on the destination and is left as it is \
                     (changing it would mean dropping it): wanted `{}`, found `{}`",
                    cq.name, src.name, cq.query, have.query
                )),
                Some(_) => {}
            }
        }
    }
}

/// Whether `text` is exactly one statement that creates continuous query
/// `name` on database `db`: the text comes from a server or a backup
/// manifest and is run as it is, so it must not be able to do anything else.
pub fn defines_cq(text: &str, name: &str, db: &str) -> bool {
    use crate::protocol::influxql::lexer::{tokens, TokenKind};
    let all: Vec<_> = tokens(text).collect();
    let names = |i: usize, want: &str| {
        all.get(i).is_some_and(|t| match t.kind {
            TokenKind::Word => t.text == want,
            TokenKind::QuotedIdent => t.text == ident(want),
            _ => false,
        })
    };
    let single = match all.iter().position(|t| t.kind == TokenKind::Semicolon) {
        None => true,
        Some(i) => i == all.len() - 1,
    };
    single
        && all.len() > 6
        && all[0].is_keyword("CREATE")
        && all[1].is_keyword("CONTINUOUS")
        && all[2].is_keyword("QUERY")
        && names(3, name)
        && all[4].is_keyword("ON")
        && names(5, db)
}

fn privilege_name(p: Privilege) -> &'static str {
    match p {
        READ => "READ",
        WRITE => "WRITE",
        _ => "ALL",
    }
}

fn plan_users(src: &Schema, dst: &Schema, passwords: &Passwords, plan: &mut Plan) {
    let src_users = match &src.users {
        Ok(users) => users,
        Err(e) => {
            plan.skipped.push(format!(
                "users and privileges not copied: the source's credentials cannot list them ({e})"
            ));
            return;
        }
    };
    let dst_users = match &dst.users {
        Ok(users) => users,
        Err(e) => {
            if !src_users.is_empty() {
                plan.skipped.push(format!(
                    "users and privileges not copied: the destination's credentials cannot list them ({e})"
                ));
            }
            return;
        }
    };
    let in_scope = |db: &str| src.database(db).is_some();
    for user in src_users {
        let name = ident(&user.name);
        let have = dst_users.iter().find(|u| u.name == user.name);
        match have {
            None => {
                let Some(password) = passwords.0.get(&user.name) else {
                    plan.skipped.push(format!(
                        "user {:?} not created: no password for it in --user-password-file \
                         (InfluxDB does not reveal passwords)",
                        user.name
                    ));
                    continue;
                };
                let admin = if user.admin {
                    " WITH ALL PRIVILEGES"
                } else {
                    ""
                };
                plan.statements.push(Statement {
                    text: format!(
                        "CREATE USER {name} WITH PASSWORD {}{admin}",
                        string_literal(password)
                    ),
                    shown: format!("CREATE USER {name} WITH PASSWORD '***'{admin}"),
                });
            }
            Some(have) if user.admin && !have.admin => plan
                .statements
                .push(Statement::plain(format!("GRANT ALL PRIVILEGES TO {name}"))),
            Some(_) => {}
        }
        for (db, privilege) in &user.grants {
            if !in_scope(db) {
                continue;
            }
            let current = have.and_then(|u| u.grants.get(db)).copied().unwrap_or(0);
            let wanted = current | privilege;
            if wanted != current {
                plan.statements.push(Statement::plain(format!(
                    "GRANT {} ON {} TO {name}",
                    privilege_name(wanted),
                    ident(db)
                )));
            }
        }
    }
}

/// Runs `plan` on `dst`, in order; the first failure stops it and names the statement.
pub async fn apply(dst: &Influx, plan: &Plan) -> Result<(), ControlError> {
    for statement in &plan.statements {
        dst.exec(&statement.text).await.map_err(|e| {
            // the message must not carry a password
            let text = e.to_string().replace(&statement.text, &statement.shown);
            ControlError::Failed(text)
        })?;
    }
    Ok(())
}

/// Makes `dst` hold the databases and retention policies of `src` that
/// data is about to be copied into (what `backfill` and `restore` do first).
pub async fn ensure_storage(src: &[Database], dst: &Influx) -> Result<usize, ControlError> {
    let wanted: Vec<String> = src.iter().map(|d| d.name.clone()).collect();
    let existing = database_names(dst).await?;
    let present: Vec<String> = wanted
        .iter()
        .filter(|n| existing.contains(n))
        .cloned()
        .collect();
    let dst_schema = read(dst, &present, Scope::Storage).await?;
    let src_schema = Schema {
        databases: src.to_vec(),
        notes: Vec::new(),
        users: Ok(Vec::new()),
    };
    let plan = plan(
        &src_schema,
        &dst_schema,
        Scope::Storage,
        &Passwords::default(),
    );
    apply(dst, &plan).await?;
    Ok(plan.statements.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(name: &str, default: bool) -> RetentionPolicy {
        RetentionPolicy {
            name: name.into(),
            duration_ns: 0,
            shard_duration_ns: 7 * 86_400_000_000_000,
            replication: 1,
            default,
        }
    }

    fn db(name: &str, rps: Vec<RetentionPolicy>, cqs: Vec<ContinuousQuery>) -> Database {
        Database {
            name: name.into(),
            retention_policies: rps,
            continuous_queries: cqs,
        }
    }

    #[test]
    fn a_missing_database_is_created_with_the_default_policy_then_the_rest() {
        let src = Schema {
            databases: vec![db(
                "d b",
                vec![rp("keep", true), rp("short", false)],
                vec![],
            )],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let dst = Schema {
            databases: vec![],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let p = plan(&src, &dst, Scope::Everything, &Passwords::default());
        let texts: Vec<&str> = p.statements.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                r#"CREATE DATABASE "d b" WITH DURATION 0s REPLICATION 1 SHARD DURATION 1w NAME "keep""#,
                r#"CREATE RETENTION POLICY "short" ON "d b" DURATION 0s REPLICATION 1 SHARD DURATION 1w"#,
            ]
        );
    }

    #[test]
    fn equal_schemas_need_nothing_and_differences_are_altered_never_dropped() {
        let src = Schema {
            databases: vec![db("d", vec![rp("a", true), rp("b", false)], vec![])],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let same = plan(&src, &src.clone(), Scope::Everything, &Passwords::default());
        assert!(same.statements.is_empty() && same.skipped.is_empty());
        let mut other = rp("b", true);
        other.replication = 3;
        let dst = Schema {
            databases: vec![db(
                "d",
                vec![rp("a", false), other, rp("extra", false)],
                vec![],
            )],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let p = plan(&src, &dst, Scope::Everything, &Passwords::default());
        let texts: Vec<&str> = p.statements.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                r#"ALTER RETENTION POLICY "a" ON "d" DURATION 0s REPLICATION 1 SHARD DURATION 1w DEFAULT"#,
                r#"ALTER RETENTION POLICY "b" ON "d" DURATION 0s REPLICATION 1 SHARD DURATION 1w"#,
            ]
        );
    }

    #[test]
    fn users_get_passwords_from_the_file_and_privileges_only_grow() {
        let grants = |g: &[(&str, Privilege)]| g.iter().map(|(d, p)| (d.to_string(), *p)).collect();
        let src = Schema {
            databases: vec![db("d", vec![rp("autogen", true)], vec![])],
            notes: Vec::new(),
            users: Ok(vec![
                User {
                    name: "new".into(),
                    admin: false,
                    grants: grants(&[("d", READ), ("other", WRITE)]),
                },
                User {
                    name: "nopass".into(),
                    admin: true,
                    grants: grants(&[]),
                },
                User {
                    name: "old".into(),
                    admin: false,
                    grants: grants(&[("d", WRITE)]),
                },
            ]),
        };
        let dst = Schema {
            databases: src.databases.clone(),
            notes: Vec::new(),
            users: Ok(vec![User {
                name: "old".into(),
                admin: false,
                grants: grants(&[("d", READ)]),
            }]),
        };
        let passwords = Passwords::parse("# comment\nnew:s3:cret\n").unwrap();
        let p = plan(&src, &dst, Scope::Everything, &passwords);
        let shown: Vec<&str> = p.statements.iter().map(|s| s.shown.as_str()).collect();
        assert_eq!(
            shown,
            [
                r#"CREATE USER "new" WITH PASSWORD '***'"#,
                r#"GRANT READ ON "d" TO "new""#,
                r#"GRANT ALL ON "d" TO "old""#,
            ]
        );
        assert!(p.statements[0].text.contains("'s3:cret'"));
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].contains("nopass"));
    }

    #[test]
    fn only_a_create_continuous_query_statement_counts_as_one() {
        let ok = r#"CREATE CONTINUOUS QUERY "c q" ON d BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(1h) END"#;
        assert!(defines_cq(ok, "c q", "d"));
        assert!(!defines_cq(ok, "c q", "other"));
        assert!(!defines_cq(ok, "c", "d"));
        for bad in [
            "DROP DATABASE d",
            r#"CREATE CONTINUOUS QUERY "c q" ON d BEGIN SELECT v INTO m2 FROM m GROUP BY time(1h) END; DROP DATABASE d"#,
            "CREATE USER x WITH PASSWORD 'p' WITH ALL PRIVILEGES",
            "",
        ] {
            assert!(!defines_cq(bad, "c q", "d"), "{bad}");
        }
        let src = Schema {
            databases: vec![db(
                "d",
                vec![rp("autogen", true)],
                vec![ContinuousQuery {
                    name: "c".into(),
                    query: "DROP DATABASE d".into(),
                }],
            )],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let dst = Schema {
            databases: vec![],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let p = plan(&src, &dst, Scope::Everything, &Passwords::default());
        assert_eq!(p.statements.len(), 1, "{:?}", p.statements);
        assert!(p.skipped[0].contains("not copied"), "{:?}", p.skipped);
    }

    #[test]
    fn a_cq_with_other_text_is_reported_not_replaced() {
        let cq = |q: &str| ContinuousQuery {
            name: "c".into(),
            query: q.into(),
        };
        let src = Schema {
            databases: vec![db(
                "d",
                vec![rp("autogen", true)],
                vec![cq("CREATE CONTINUOUS QUERY c ON d BEGIN x END")],
            )],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let dst = Schema {
            databases: vec![db(
                "d",
                vec![rp("autogen", true)],
                vec![cq("CREATE CONTINUOUS QUERY c ON d BEGIN y END")],
            )],
            notes: Vec::new(),
            users: Ok(vec![]),
        };
        let p = plan(&src, &dst, Scope::Everything, &Passwords::default());
        assert!(p.statements.is_empty());
        assert_eq!(p.skipped.len(), 1);
    }
}
