//! The switch board shared by every instance (docs/reliability.md): a change is
//! written to the `switch_board` table first, then applied here; every instance
//! reads the table every half second and applies what changed. The stock gate is
//! reloaded wherever it is switched back on; a reset of the sale empties every
//! instance's local answer cache.

use super::JobError;
use crate::defenses::stock_gate::Load;
use crate::state::AppState;
use crate::store::{now_ms, revoked_tokens, switch_board};
use crate::switches::{BoardState, Defense, LabSettings};

/// Switches defenses everywhere.
pub async fn set_defenses(state: &AppState, changes: &[(Defense, bool)]) -> Result<(), JobError> {
    let _turn = state.switches.shared_turn().await;
    let gate_was_on = state.gate.is_on();
    for (defense, on) in changes {
        let name = format!("defense.{}", defense.id());
        switch_board::put(state.db.pool(), &name, i64::from(*on)).await?;
        if state.switches.is_on(*defense) != *on {
            state.switches.set(*defense, *on);
        }
    }
    reload_gate_if_switched_on(state, gate_was_on).await
}

/// Changes the lab's run-time settings everywhere.
pub async fn set_lab(state: &AppState, lab: LabSettings) -> Result<(), JobError> {
    let _turn = state.switches.shared_turn().await;
    write(state, &lab.entries()).await?;
    state.switches.set_lab_settings(lab);
    Ok(())
}

/// Puts back everything [`crate::switches::SwitchBoard::save`] saw, everywhere.
pub async fn restore(state: &AppState, saved: &BoardState) -> Result<(), JobError> {
    let _turn = state.switches.shared_turn().await;
    let gate_was_on = state.gate.is_on();
    write(state, &saved.entries()).await?;
    state.switches.restore(saved);
    reload_gate_if_switched_on(state, gate_was_on).await
}

async fn write(state: &AppState, rows: &[(String, i64)]) -> Result<(), JobError> {
    for (name, value) in rows {
        switch_board::put(state.db.pool(), name, *value).await?;
    }
    Ok(())
}

/// Applies what the table says; returns how many settings changed here.
pub async fn refresh(state: &AppState) -> Result<u64, JobError> {
    let _turn = state.switches.shared_turn().await;
    let gate_was_on = state.gate.is_on();
    let rows = switch_board::all(state.db.pool()).await?;
    let changed = rows
        .iter()
        .filter(|(name, value)| apply_row(state, name, *value))
        .count();
    reload_gate_if_switched_on(state, gate_was_on).await?;
    Ok(changed as u64)
}

/// One row of the board: a switch, a lab setting, or the last reset.
fn apply_row(state: &AppState, name: &str, value: i64) -> bool {
    match name {
        SALE_RESET_AT => state.keys.apply_reset(value),
        _ => state.switches.apply(name, value),
    }
}

/// The board's row that tells every instance when the sale was last reset.
const SALE_RESET_AT: &str = "sale.reset_at";

/// Tells every instance that the sale was reset, so that their local answer
/// caches (`src/answer_cache.rs`) forget the old sale's answers: this one at
/// once, the others at their next refresh.
pub async fn announce_reset(state: &AppState) -> Result<(), JobError> {
    let reset_at = now_ms();
    state.keys.apply_reset(reset_at);
    switch_board::put(state.db.pool(), SALE_RESET_AT, reset_at).await?;
    Ok(())
}

/// At start: join the shared board, or create it from this instance's defaults.
pub async fn load(state: &AppState) -> Result<(), JobError> {
    if switch_board::all(state.db.pool()).await?.is_empty() {
        let _turn = state.switches.shared_turn().await;
        return write(state, &state.switches.entries()).await;
    }
    refresh(state).await.map(drop)
}

/// The gate was bypassed while off: start again from the database's stock.
async fn reload_gate_if_switched_on(state: &AppState, gate_was_on: bool) -> Result<(), JobError> {
    if !gate_was_on && state.gate.is_on() {
        state.gate.load(Load::Overwrite).await?;
    }
    Ok(())
}

/// Mirrors the revoked login tokens of every instance here; forgets expired ones.
pub async fn refresh_revoked_tokens(state: &AppState) -> Result<u64, JobError> {
    let now = now_ms() / 1000;
    revoked_tokens::forget_expired(state.db.pool(), now).await?;
    let live = revoked_tokens::live(state.db.pool(), now).await?;
    let count = live.len() as u64;
    state.sessions.set_revoked(
        live.into_iter()
            .map(|(token, expires)| (token, u64::try_from(expires).unwrap_or(0))),
    );
    Ok(count)
}

/// Revokes a login token everywhere (logout).
pub async fn revoke_token(
    state: &AppState,
    token_id: &str,
    expires_at: u64,
) -> Result<(), JobError> {
    let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
    revoked_tokens::insert(state.db.pool(), token_id, expires).await?;
    state.sessions.revoke(token_id, expires_at);
    Ok(())
}
