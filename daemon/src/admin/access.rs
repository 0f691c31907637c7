//! Who may operate: decided on the socket's peer credentials (SO_PEERCRED),
//! which the kernel fills in and the client cannot forge, on top of the file
//! mode (0660) and group that keep everyone else from connecting at all.

use std::collections::BTreeSet;

use nix::unistd::{Gid, Group, Uid, User};

use super::AdminError;
use crate::config;

/// The operators: root, the daemon's own user, the admin group (primary or
/// listed member) and any uid named in the config. Group membership is read
/// again for every connection: someone removed from the group stops being
/// an operator at once, without a restart.
#[derive(Debug, Clone)]
pub struct Operators {
    uids: BTreeSet<u32>,
    gid: Option<u32>,
}

/// The uids of the group's listed members, as the system says now.
fn members(gid: u32) -> BTreeSet<u32> {
    let Ok(Some(group)) = Group::from_gid(Gid::from_raw(gid)) else {
        return BTreeSet::new();
    };
    group
        .mem
        .iter()
        .filter_map(|m| User::from_name(m).ok().flatten())
        .map(|u| u.uid.as_raw())
        .collect()
}

/// A connected operator, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator {
    pub uid: u32,
    pub pid: Option<i32>,
}

impl Operators {
    /// Resolves `admin.group` to its gid at start; a group that does not
    /// exist is a start error (a typo must not silently lock operators out
    /// or in). Its members are read per connection ([`Operators::permits`]).
    pub fn from_config(cfg: &config::Admin) -> Result<Self, AdminError> {
        let mut uids: BTreeSet<u32> = [0, Uid::effective().as_raw()].into();
        uids.extend(cfg.operator_uids.iter().copied());
        let mut gid = None;
        if let Some(name) = &cfg.group {
            let group = Group::from_name(name)
                .map_err(|e| AdminError::Group(name.clone(), e.to_string()))?
                .ok_or_else(|| AdminError::Group(name.clone(), "no such group".into()))?;
            for member in &group.mem {
                if !matches!(User::from_name(member), Ok(Some(_))) {
                    tracing::warn!(%member, group = %name, "group member is not a user");
                }
            }
            gid = Some(group.gid.as_raw());
        }
        Ok(Operators { uids, gid })
    }

    /// The group the socket file is given, if one is configured.
    pub fn group(&self) -> Option<Gid> {
        self.gid.map(Gid::from_raw)
    }

    /// Whether the peer (`uid`, primary `gid`) operates: a fixed operator,
    /// or in the admin group now (primary group, or listed member).
    pub fn permits(&self, uid: u32, gid: u32) -> bool {
        if self.uids.contains(&uid) {
            return true;
        }
        match self.gid {
            Some(admin) => admin == gid || members(admin).contains(&uid),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_self_group_and_listed_uids_only() {
        let cfg = config::Admin {
            operator_uids: vec![4242],
            ..config::Admin::default()
        };
        let ops = Operators::from_config(&cfg).unwrap();
        assert!(ops.permits(0, 0));
        assert!(ops.permits(Uid::effective().as_raw(), 12345));
        assert!(ops.permits(4242, 4242));
        assert!(!ops.permits(65534, 65534) || Uid::effective().as_raw() == 65534);
        let with_group = Operators {
            gid: Some(777),
            ..ops
        };
        assert!(with_group.permits(5000, 777));
        assert!(!with_group.permits(5000, 778) || Uid::effective().as_raw() == 5000);
    }

    #[test]
    fn an_unknown_group_is_refused_by_name() {
        let cfg = config::Admin {
            group: Some("arclock-no-such-group".into()),
            ..config::Admin::default()
        };
        let err = Operators::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("arclock-no-such-group"), "{err}");
    }
}
