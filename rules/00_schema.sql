/*
 * Tables of the example rule set: reference data loaded at start of day, and the running state
 * that the flows in 90_flows.sql keep up to date. Every other file here reads these tables, so
 * this file comes first (files load in name order: riskgw check rules/*.sql).
 *
 * account_info and account_ticket_info are the reference system's tables, column for column.
 * A row of account_ticket_info is also the account's registration for a security: the checks
 * fail closed (reject) for an account and security that have no row, in both directions.
 * Money and prices are integers in the smallest currency unit; quantities are whole units.
 */

/* Cash per account */
create table account_info
(
    account_id          INT          not null , /* account */
    available_balance   INT8         null     , /* cash not frozen by open buy orders */
    total_balance       INT8         null     , /* all cash */
)

/* Holdings per account and security */
create table account_ticket_info
(
    account_id          INT          not null , /* account */
    ticket_id           char(16)     null     , /* security */
    avail_quantity      INT          null     , /* holdings not frozen by open sell orders */
    total_quantity      INT          null     , /* all holdings */
    avg_price           INT8         null     , /* average price paid */
    buy_top_price       INT8         null     , /* highest price of the open buy orders; NULL: none */
    sell_low_price      INT8         null     , /* lowest price of the open sell orders; NULL: none */
)

/* Per security: the reference price of the price band and the per-order limits */
create table instrument_info
(
    ticket_id           char(16)     not null , /* security */
    ref_price           INT8         null     , /* reference price, e.g. the previous close */
    band_bps            INT          null     , /* allowed distance from ref_price, in basis points */
    max_qty             INT8         null     , /* largest quantity of one order */
    max_notional        INT8         null     , /* largest price * quantity of one order */
)

/* Orders accepted and not yet done (filled, rejected by the exchange or cancelled) */
create table order_info
(
    order_id            INT8         not null , /* order */
    account_id          INT          not null , /* account */
    ticket_id           char(16)     null     , /* security */
    direction           INT          null     , /* 0 buy, 1 sell */
    price               INT8         null     , /* limit price: funds are frozen at this price */
    open_quantity       INT8         null     , /* quantity still open at the exchange */
)

/* Open quantity per account and security: lets the flows clear buy_top_price / sell_low_price */
create table open_interest
(
    account_id          INT          not null , /* account */
    ticket_id           char(16)     not null , /* security */
    buy_open            INT8         null     , /* open buy quantity */
    sell_open           INT8         null     , /* open sell quantity */
)

/* Order-rate counter per account over fixed one-second windows (see 60_rate.sql) */
create table rate_state
(
    account_id          INT          not null , /* account */
    window_start        INT8         null     , /* start of the current window, ns */
    order_count         INT          null     , /* orders accepted in that window */
)
