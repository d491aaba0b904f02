//! Who may do what on the admin API: the role predicates and the user scope every user, key
//! and quota handler goes through, so the rules live in one place rather than in each arm.
//!
//! A PARTNER manages its own company's users, but never above itself: it cannot grant ADMIN
//! or AUDITOR, and so it may not act on a user who holds one either (change, delete or
//! demote them, mint or revoke their keys). Otherwise a PARTNER could mint a key for its
//! company's ADMIN and act as that ADMIN.

use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::User;

use super::service::{Admin, store_err};

/// The roles only an ADMIN grants.
const ADMIN_GRANTED: [&str; 2] = ["ADMIN", "AUDITOR"];

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
pub(super) async fn user_in_scope(
    admin: &Admin,
    p: &Principal,
    name: &str,
    access: Access,
) -> Result<User, GatewayError> {
    let u = admin
        .store
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
    fn a_partner_grants_neither_admin_nor_auditor() {
        let partner = principal("acme", &["PARTNER"]);
        assert!(check_user_write(&partner, &user("acme", &["PARTNER"])).is_ok());
        assert!(check_user_write(&partner, &user("acme", &["AUDITOR"])).is_err());
        assert!(check_user_write(&partner, &user("other", &["USER"])).is_err());
        assert!(check_user_write(&principal("x", &["ADMIN"]), &user("acme", &["ADMIN"])).is_ok());
    }
}
