/*
 * Holdings check for sells: the quantity sold must not exceed the account's available (not yet
 * frozen) holdings of the security, so the account never sells what it does not own (no naked
 * short selling). Fails closed when the account has no holdings row for the security.
 */

Rule HoldingsCheck (
    trade_order.quantity <=
    (select avail_quantity from account_ticket_info
      where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id)
    where trade_order.direction = 1
)
