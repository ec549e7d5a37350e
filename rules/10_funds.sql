/*
 * Funds check for buys: the whole order, at its limit price, must be covered by the account's
 * available (not yet frozen) cash. Accepted buys freeze their amount (90_flows.sql), so many open
 * buys cannot together spend more than the account holds. Fails closed when the account is
 * unknown or its balance is NULL.
 */

Rule FundsCheck (
    trade_order.price * trade_order.quantity <=
    (select available_balance from account_info
      where account_id = trade_order.account_id)
    where trade_order.direction = 0
)
