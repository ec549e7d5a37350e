/*
 * Anti-self-trade (no wash trades): an account's new order must not be able to match one of its
 * own open orders in the same security.
 *
 * SelfTradeSell is the reference system's rule T1: a sell must be priced above the account's
 * highest open buy. SelfTradeBuy is its mirror: a buy must be priced below the account's lowest
 * open sell. A NULL price in the holdings row means "no open order on that side" and passes (the
 * COALESCE inside the sub-query); an account with no holdings row for the security fails closed
 * (the sub-query itself is NULL), as the holdings row is the account's registration for it.
 * buy_top_price / sell_low_price are kept by 90_flows.sql.
 */

Rule SelfTradeSell (
    trade_order.price >
    (select coalesce(buy_top_price, 0) from account_ticket_info
      where ticket_id = trade_order.ticket_id and account_id = trade_order.account_id)
    where trade_order.direction = 1
)

Rule SelfTradeBuy (
    trade_order.price <
    (select coalesce(sell_low_price, 9223372036854775807) from account_ticket_info
      where ticket_id = trade_order.ticket_id and account_id = trade_order.account_id)
    where trade_order.direction = 0
)
