//! Which Twilio account a recording's DELETE goes under, and when a 404 there proves the
//! recording gone. Twilio scopes every v2010 resource by the account in its path: a
//! subaccount's recording is not found under its parent's path, so a 404 there proves nothing.
//! The accounts the credentials reach (the main account and its subaccounts, `GET
//! /2010-04-01/Accounts.json`) are listed at most once a run, and only when a decision needs them.

use std::collections::BTreeSet;

use super::{Client, Method};

/// Whose recording a row holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// The policy names no account column: the credentials' own account.
    Main,
    /// The row's value of the policy's account column, as stored (NULL: None).
    Row(Option<String>),
}

/// The accounts the credentials reach, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachable {
    /// The main account and its subaccounts.
    Listed(BTreeSet<String>),
    /// The listing failed, and why (a standard API key may not list accounts: 401 or 403).
    Unknown(String),
}

/// The account whose path the DELETE takes; Err says why the row is not sent at all.
pub fn route<'r>(main: &str, account: &Account, reachable: &dyn Fn() -> &'r Reachable) -> Result<String, String> {
    let sid = match account {
        Account::Main => return Ok(main.to_string()),
        Account::Row(None) => return Err("the row's account column is NULL, so the recording's account is unknown".into()),
        Account::Row(Some(sid)) if !super::is_account_sid(sid) => {
            let shown: String = sid.chars().take(40).collect();
            return Err(format!("the row's account {shown:?} is not AC + 32 hex digits"));
        }
        Account::Row(Some(sid)) => sid,
    };
    if sid == main {
        return Ok(sid.clone());
    }
    match reachable() {
        Reachable::Listed(listed) if listed.contains(sid) => Ok(sid.clone()),
        Reachable::Listed(_) => Err(format!("account {sid} is neither the credentials' account {main} nor one of its subaccounts")),
        Reachable::Unknown(why) => Err(format!("account {sid} could not be checked against the accounts the credentials reach: {why}")),
    }
}

/// Whether Twilio's 404 for a recording routed by `route` proves it gone. Under the row's own
/// account it does. Under the main account only when the listing shows no subaccount: a
/// subaccount's recording is a 404 there too.
pub fn not_found_is_gone<'r>(main: &str, account: &Account, reachable: &dyn Fn() -> &'r Reachable) -> Result<(), String> {
    if let Account::Row(_) = account {
        return Ok(());
    }
    match reachable() {
        Reachable::Listed(listed) => {
            let subaccounts = listed.iter().filter(|sid| *sid != main).count();
            if subaccounts == 0 {
                Ok(())
            } else {
                Err(format!(
                    "Twilio answered 404 under account {main}, which has {subaccounts} subaccount(s): a subaccount's recording is not found there; name the policy's account_column"
                ))
            }
        }
        Reachable::Unknown(why) => Err(format!(
            "Twilio answered 404 under account {main}, and whether it has subaccounts is unknown ({why}): use credentials that may list accounts, or name the policy's account_column"
        )),
    }
}

/// One page of `GET /2010-04-01/Accounts.json`: the SIDs on it and the next page's path, if any.
pub fn parse_page(body: &str) -> Result<(Vec<String>, Option<String>), String> {
    let page: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("the account list is not JSON: {e}"))?;
    let accounts = page["accounts"].as_array().ok_or("the account list has no \"accounts\" array")?;
    let mut sids = Vec::with_capacity(accounts.len());
    for account in accounts {
        match account["sid"].as_str() {
            Some(sid) if super::is_account_sid(sid) => sids.push(sid.to_string()),
            _ => return Err("the account list has an entry without an account SID".into()),
        }
    }
    // Followed only within the same listing, on the configured base URL.
    let next = match page["next_page_uri"].as_str() {
        None => None,
        Some(uri) if uri.starts_with("/2010-04-01/Accounts.json?") => Some(uri.to_string()),
        Some(_) => return Err("the account list's next_page_uri is not a page of /2010-04-01/Accounts.json".into()),
    };
    Ok((sids, next))
}

/// The first page asked for: Twilio's largest.
pub const FIRST_PAGE: &str = "/2010-04-01/Accounts.json?PageSize=1000";

/// Pages followed at most (a million accounts): a server that never ends its list ends here.
pub const MAX_PAGES: usize = 1000;

impl Client {
    /// The accounts the credentials reach: listed once, on first need.
    pub(super) fn reachable(&self) -> &Reachable {
        self.reachable.get_or_init(|| self.list_accounts())
    }

    fn list_accounts(&self) -> Reachable {
        let mut listed = std::collections::BTreeSet::from([self.config.credentials.account_sid.clone()]);
        let mut page = Some(FIRST_PAGE.to_string());
        for _ in 0..MAX_PAGES {
            let Some(path) = page.take() else { return Reachable::Listed(listed) };
            let body = match self.exchange(Method::Get, &path) {
                Ok(http) if http.status == 200 => http.body,
                Ok(http) => return Reachable::Unknown(format!("listing the accounts got HTTP {}", http.status)),
                Err((answer, _)) => return Reachable::Unknown(format!("listing the accounts failed: {answer:?}")),
            };
            match parse_page(&body) {
                Ok((sids, next)) => {
                    listed.extend(sids);
                    page = next;
                }
                Err(why) => return Reachable::Unknown(why),
            }
        }
        Reachable::Unknown(format!("the account list did not end within {} pages", MAX_PAGES))
    }
}
