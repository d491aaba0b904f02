//! Who may do what on the admin API: the rules the route table declares per route
//! ([`Rule`]), checked by [`admit`] before a handler runs, and the named per-object checks
//! the handlers add for what a request asks (the user a body would make, the company a list
//! is confined to).
//!
//! A PARTNER manages its own company's users, but never above itself: it cannot grant ADMIN
//! or AUDITOR, and so it may not act on a user who holds one either (change, delete or
//! demote them, mint or revoke their keys). Otherwise a PARTNER could mint a key for its
//! company's ADMIN and act as that ADMIN.

use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::User;

use super::routes::Params;
use super::service::Admin;
use super::wire::store_err;

/// The roles only an ADMIN grants.
const ADMIN_GRANTED: [&str; 2] = ["ADMIN", "AUDITOR"];

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rule {
    /// Anyone: no credentials are asked for.
    Anyone,
    /// An authenticated caller whom `roles` lets in, then allowed on `target`.
    Caller { roles: Roles, target: Target },
    /// Anyone when `[metrics] public = true` (a scraper without credentials), else an
    /// authenticated caller whom `roles` lets in: decided at start, not per route.
    PublicIfConfigured { roles: Roles },
}

/// The roles a route asks of its caller.
#[derive(Debug, Clone, Copy)]
pub(super) enum Roles {
    /// Whatever they hold: the target, or the handler, decides.
    Any,
    /// One of these, else 403 naming the refusal.
    OneOf(&'static [&'static str], &'static str),
}

/// What the path names that the caller must be allowed on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// Nothing beyond the roles.
    Nothing,
    /// Reading the company `{key}`: its readers ([`reads`]).
    CompanyRead,
    /// The user `{username}` as stored, for this access ([`may_access`]); the handler gets
    /// that user.
    User(Access),
}

/// Checks a route's `roles`, then its `target`, for the authenticated caller `p`; answers
/// the user the target names, when it names one. A route whose template lacks the variable
/// its target reads is refused with a 500, never let through.
pub(super) async fn admit(
    admin: &Admin,
    p: &Principal,
    roles: Roles,
    target: Target,
    params: &Params,
) -> Result<Option<User>, GatewayError> {
    holds(p, roles)?;
    match target {
        Target::Nothing => Ok(None),
        Target::CompanyRead => {
            let key = params.require("key")?;
            if reads(p, key) {
                Ok(None)
            } else {
                Err(forbidden("not your company"))
            }
        }
        Target::User(access) => {
            let name = params.require("username")?;
            user_in_scope(admin, p, name, access).await.map(Some)
        }
    }
}

/// 403 with the route's refusal unless `p` holds one of the roles it asks for.
fn holds(p: &Principal, roles: Roles) -> Result<(), GatewayError> {
    match roles {
        Roles::Any => Ok(()),
        Roles::OneOf(allowed, _) if allowed.iter().any(|r| p.has_role(r)) => Ok(()),
        Roles::OneOf(_, refusal) => Err(forbidden(refusal)),
    }
}

/// The company a list or a statistic of `p` is confined to: none for those who read
/// everything, else the caller's own (the route lets in no one else).
pub(super) fn company_scope(p: &Principal) -> Option<String> {
    if reads_all(p) {
        None
    } else {
        Some(p.company.to_string())
    }
}

/// The company a user list of `p` covers, when it asked for `asked`: a PARTNER lists only
/// its own company's users.
pub(super) fn users_listed(
    p: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, GatewayError> {
    match (company_scope(p), asked) {
        (None, asked) => Ok(asked),
        (Some(own), Some(asked)) if asked != own => {
            Err(forbidden("a PARTNER lists only its own company's users"))
        }
        (Some(own), Some(_) | None) => Ok(Some(own)),
    }
}

/// What a handler does with the user it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Reads the user, their keys or their quotas.
    Read,
    /// Changes, deletes or demotes the user, or mints or revokes their keys.
    Write,
}

pub(super) fn forbidden(reason: &str) -> GatewayError {
    GatewayError::Forbidden {
        reason: reason.to_owned(),
    }
}

pub(super) fn is_admin(p: &Principal) -> bool {
    p.has_role("ADMIN")
}

pub(super) fn reads_all(p: &Principal) -> bool {
    p.has_role("ADMIN") || p.has_role("AUDITOR")
}

/// May `p` manage users and keys of `company`?
pub(super) fn manages(p: &Principal, company: &str) -> bool {
    is_admin(p) || (p.has_role("PARTNER") && &*p.company == company)
}

/// May `p` read users and keys of `company`?
pub(super) fn reads(p: &Principal, company: &str) -> bool {
    reads_all(p) || manages(p, company)
}

/// Does `u` hold a role only an ADMIN grants?
fn holds_admin_granted(u: &User) -> bool {
    u.roles.iter().any(|r| ADMIN_GRANTED.contains(&r.as_str()))
}

/// May `p` do `access` on the user `u` as stored now?
pub(super) fn may_access(p: &Principal, u: &User, access: Access) -> Result<(), GatewayError> {
    match access {
        Access::Read if reads(p, &u.company_key) => Ok(()),
        Access::Write if manages(p, &u.company_key) => {
            // Checked on the user as it is, not as the request would make it: a PUT that
            // demotes an ADMIN grants nothing, yet acts above the PARTNER.
            if !is_admin(p) && holds_admin_granted(u) {
                Err(forbidden(
                    "only an ADMIN manages a user holding ADMIN or AUDITOR",
                ))
            } else {
                Ok(())
            }
        }
        Access::Read | Access::Write => Err(forbidden("not a user of your company")),
    }
}

/// The user `name`, if `p` may do `access` on them (see [`may_access`]).
async fn user_in_scope(
    admin: &Admin,
    p: &Principal,
    name: &str,
    access: Access,
) -> Result<User, GatewayError> {
    let u = admin
        .directory
        .get_user(name.to_owned())
        .await
        .map_err(store_err)?;
    may_access(p, &u, access)?;
    Ok(u)
}

/// A PARTNER writes only users of its own company, and never grants ADMIN or AUDITOR: `u`
/// is the user as the request would make it.
pub(super) fn check_user_write(p: &Principal, u: &User) -> Result<(), GatewayError> {
    if is_admin(p) {
        return Ok(());
    }
    if !manages(p, &u.company_key) {
        return Err(forbidden("a PARTNER manages only its own company's users"));
    }
    if holds_admin_granted(u) {
        return Err(forbidden("only an ADMIN grants ADMIN or AUDITOR"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(company: &str, roles: &[&str]) -> Principal {
        Principal {
            user: "caller".into(),
            company: company.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            key_id: None,
        }
    }

    fn user(company: &str, roles: &[&str]) -> User {
        User {
            username: "target".into(),
            name: None,
            email: None,
            phone: None,
            company_key: company.into(),
            enabled: true,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            timezone: 0,
        }
    }

    fn allowed(p: &Principal, u: &User, access: Access) -> bool {
        may_access(p, u, access).is_ok()
    }

    #[test]
    fn a_partner_never_acts_on_a_user_above_it() {
        let partner = principal("acme", &["PARTNER"]);
        for roles in [
            &["ADMIN"][..],
            &["AUDITOR"],
            &["USER", "AUDITOR"],
            &["PARTNER", "ADMIN"],
        ] {
            let above = user("acme", roles);
            assert!(!allowed(&partner, &above, Access::Write), "{roles:?}");
            assert!(
                allowed(&partner, &above, Access::Read),
                "{roles:?}: reads stay"
            );
        }
        for roles in [&[][..], &["USER"], &["PARTNER"], &["USER", "PARTNER"]] {
            assert!(
                allowed(&partner, &user("acme", roles), Access::Write),
                "{roles:?}"
            );
        }
        assert!(!allowed(&partner, &user("other", &["USER"]), Access::Write));
        assert!(!allowed(&partner, &user("other", &["USER"]), Access::Read));
    }

    #[test]
    fn an_admin_acts_on_anyone_and_an_auditor_only_reads() {
        let admin = principal("system", &["ADMIN"]);
        let auditor = principal("system", &["AUDITOR"]);
        for roles in [&["ADMIN"][..], &["AUDITOR"], &["USER"]] {
            let u = user("acme", roles);
            assert!(allowed(&admin, &u, Access::Write));
            assert!(allowed(&auditor, &u, Access::Read));
            assert!(!allowed(&auditor, &u, Access::Write));
        }
        // An AUDITOR who is also its company's PARTNER still cannot touch an ADMIN.
        let both = principal("acme", &["PARTNER", "AUDITOR"]);
        assert!(!allowed(&both, &user("acme", &["ADMIN"]), Access::Write));
    }

    #[test]
    fn a_route_asking_for_roles_lets_in_their_holders_only() {
        let readers = Roles::OneOf(&["ADMIN", "AUDITOR"], "for readers");
        assert!(holds(&principal("x", &["USER", "AUDITOR"]), readers).is_ok());
        let refused = holds(&principal("x", &["PARTNER"]), readers).unwrap_err();
        assert!(refused.to_string().contains("for readers"), "{refused}");
        assert!(holds(&principal("x", &[]), Roles::Any).is_ok());
    }

    #[test]
    fn a_partner_lists_only_its_own_company() {
        let partner = principal("acme", &["PARTNER"]);
        assert_eq!(
            users_listed(&partner, None).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            users_listed(&partner, Some("acme".into()))
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        assert!(users_listed(&partner, Some("other".into())).is_err());
        let auditor = principal("system", &["AUDITOR"]);
        assert_eq!(users_listed(&auditor, None).unwrap(), None);
        assert_eq!(
            users_listed(&auditor, Some("other".into()))
                .unwrap()
                .as_deref(),
            Some("other")
        );
        assert_eq!(company_scope(&partner).as_deref(), Some("acme"));
        assert_eq!(company_scope(&auditor), None);
    }

    #[test]
    fn a_partner_grants_neither_admin_nor_auditor() {
        let partner = principal("acme", &["PARTNER"]);
        assert!(check_user_write(&partner, &user("acme", &["PARTNER"])).is_ok());
        assert!(check_user_write(&partner, &user("acme", &["AUDITOR"])).is_err());
        assert!(check_user_write(&partner, &user("other", &["USER"])).is_err());
        assert!(check_user_write(&principal("x", &["ADMIN"]), &user("acme", &["ADMIN"])).is_ok());
    }
}
