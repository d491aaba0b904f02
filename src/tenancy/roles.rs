//! Roles on proxied routes: which roles a route admits, decided when the pack loads, and the
//! set a caller holds, read from its principal once per request.
//!
//! DESIGN §8: `READ` routes admit any role, `WRITE` routes `PARTNER` or `ADMIN`, `AUDITOR`
//! never writes; a route may list its own `roles`. A caller holding none of the four roles
//! is admitted nowhere: an unknown role string grants nothing.

use std::fmt;

use http::Method;

/// One of the gateway's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ADMIN`: reaches every company, reads and writes.
    Admin,
    /// `PARTNER`: reads and writes in its reach.
    Partner,
    /// `USER`: reads in its reach, never writes.
    User,
    /// `AUDITOR`: reads in its reach and the audit trail, never writes.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Partner, Role::User, Role::Auditor];

    /// The role's name, upper case, as principals carry it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Partner => "PARTNER",
            Role::User => "USER",
            Role::Auditor => "AUDITOR",
        }
    }

    /// The role a name spells, case-insensitively (how principals' roles are compared).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(name))
    }

    fn bit(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Partner => 2,
            Role::User => 4,
            Role::Auditor => 8,
        }
    }
}

/// A set of roles.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role.
    pub const EMPTY: RoleSet = RoleSet(0);

    /// The set of `roles`.
    pub fn of(roles: impl IntoIterator<Item = Role>) -> Self {
        RoleSet(roles.into_iter().fold(0, |bits, r| bits | r.bit()))
    }

    /// The roles a caller holds, from its principal's role names.
    pub fn held<S: AsRef<str>>(names: &[S]) -> Self {
        Self::of(names.iter().filter_map(|n| Role::parse(n.as_ref())))
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the sets share a role.
    pub fn intersects(self, other: RoleSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set holds no role.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles in the set, in [`Role::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// What a route admits when it names no `roles`: by method group (`READ` any role,
    /// `WRITE` `PARTNER` or `ADMIN`), and for a group of the pack's own naming by whether its
    /// method is safe, so a new group can never open writes to every role.
    pub fn by_group(group: &str, method: &Method) -> Self {
        let reads = match group {
            "READ" => true,
            "WRITE" => false,
            _ => is_safe(method),
        };
        if reads {
            RoleSet::of(Role::ALL)
        } else {
            RoleSet::of([Role::Partner, Role::Admin])
        }
    }
}

/// GET and HEAD: the methods that read.
pub fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Role::name)).finish()
    }
}

/// `PARTNER or ADMIN`: how a refusal names the roles a route needs.
impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::name).collect();
        match names.as_slice() {
            [] => f.write_str("no role"),
            [one] => f.write_str(one),
            [init @ .., last] => write!(f, "{} or {last}", init.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_admit_by_the_design_rule() {
        let read = RoleSet::by_group("READ", &Method::GET);
        let write = RoleSet::by_group("WRITE", &Method::POST);
        for r in Role::ALL {
            assert!(read.contains(r), "{r:?} reads");
        }
        assert!(write.contains(Role::Partner) && write.contains(Role::Admin));
        assert!(!write.contains(Role::User) && !write.contains(Role::Auditor));
        // A group the pack names itself follows the method: a write stays closed.
        assert_eq!(RoleSet::by_group("BULK", &Method::DELETE), write);
        assert_eq!(RoleSet::by_group("REPORTS", &Method::GET), read);
        // A WRITE group on a GET is still a write group.
        assert_eq!(RoleSet::by_group("WRITE", &Method::GET), write);
    }

    #[test]
    fn held_roles_are_read_case_insensitively_and_unknown_ones_grant_nothing() {
        let held = RoleSet::held(&["partner", "SUPERUSER"]);
        assert!(held.contains(Role::Partner));
        assert_eq!(held, RoleSet::of([Role::Partner]));
        assert!(RoleSet::held::<&str>(&[]).is_empty());
        assert!(RoleSet::held(&["root", "admin "]).is_empty());
    }

    #[test]
    fn a_refusal_names_the_roles() {
        assert_eq!(
            RoleSet::of([Role::Partner, Role::Admin]).to_string(),
            "ADMIN or PARTNER"
        );
        assert_eq!(RoleSet::of([Role::Admin]).to_string(), "ADMIN");
        assert_eq!(
            RoleSet::of(Role::ALL).to_string(),
            "ADMIN, PARTNER, USER or AUDITOR"
        );
    }
}
