/*
 * Order-rate limit (flow control): at most 8 accepted orders per account in each fixed
 * one-second window of the order timestamp ts (ns). A sliding window would need a scan over the
 * order log, so the count is kept per account for the current window only: the trigger starts a
 * new window (count 1) when an accepted order falls outside the stored one. Orders that the
 * rules reject do not count. An account with no counter row yet has sent nothing.
 */

Rule OrderRate (
    coalesce(
      (select case when window_start = trade_order.ts / 1000000000 * 1000000000
                   then order_count else 0 end
         from rate_state where account_id = trade_order.account_id),
      0) < 8
)

create trigger rate_count after accept on trade_order
begin
    insert into rate_state (account_id, window_start, order_count)
    values (trade_order.account_id, trade_order.ts / 1000000000 * 1000000000, 1)
    on conflict (account_id) do update set
        order_count = case when window_start = excluded.window_start then order_count + 1 else 1 end,
        window_start = excluded.window_start;
end;
