//! Who may do what on the admin API: the role predicates and the user scope every user, key
//! and quota handler goes through, so the rules live in one place rather than in each arm.

use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::User;

use super::service::{Admin, store_err};

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

/// The user `name`, if `p` may manage (`write`) or read users of their company.
pub(super) async fn user_in_scope(
    admin: &Admin,
    p: &Principal,
    name: &str,
    write: bool,
) -> Result<User, GatewayError> {
    let u = admin
        .store
        .get_user(name.to_owned())
        .await
        .map_err(store_err)?;
    let allowed = if write {
        manages(p, &u.company_key)
    } else {
        reads(p, &u.company_key)
    };
    if allowed {
        Ok(u)
    } else {
        Err(forbidden("not a user of your company"))
    }
}

/// A PARTNER writes only users of its own company, and never grants ADMIN or AUDITOR.
pub(super) fn check_user_write(p: &Principal, u: &User) -> Result<(), GatewayError> {
    if is_admin(p) {
        return Ok(());
    }
    if !manages(p, &u.company_key) {
        return Err(forbidden("a PARTNER manages only its own company's users"));
    }
    if u.roles.iter().any(|r| r == "ADMIN" || r == "AUDITOR") {
        return Err(forbidden("only an ADMIN grants ADMIN or AUDITOR"));
    }
    Ok(())
}
