// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * DOE table unit: column store, hash index and scan engine of every table.
 *
 * Storage
 *   COLS column banks, each TABLES*ROWS cells of {null, value[63:0]}, address {table, row};
 *   a whole row is read (or written) in one cycle.  Rows 0..count-1 of a table are live; a row
 *   handle is the row number.
 *
 *   Hash index: TABLES*2^CL_BUCKETS buckets of WAYS slots, address {table, bucket}.
 *
 *     slot:   | valid | row[CL_ROWS-1:0] | key word KEY_WORDS-1 | ... | key word 0 |
 *     bucket: | slot WAYS-1 | ... | slot 0 |
 *
 *   A lookup reads one bucket and compares all its ways at once, so it costs the same whatever
 *   the fill.  ALLOC takes the lowest free way; when the bucket is full the ALLOC fails (NULL
 *   handle, no row) and err_index_full is set until the next clear.  Rows with a NULL key word
 *   are stored but not indexed.
 *
 * Configuration (s_cfg_*, while idle)
 *   s_cfg_scan = 0: table s_cfg_index, field 0 = key words (0: no key), 1..6 = key column i-1
 *   s_cfg_scan = 1: scan spec s_cfg_index, field 0 = table, 1 = mode (rgw_isa_pkg::scan_mode_t),
 *                   2 = match words, 3 = order column, 4..9 = match column i-4
 *
 * Commands (rgw_doe_pkg::tcmd_t) run in order, each seeing the effects of the ones before, and
 * answer in order, one response per command:
 *
 *   command   latency (accept to m_rsp_valid)
 *   LOOKUP    2      pipelined: the next LOOKUP / READ / RB_CELL is accepted while it answers
 *   READ      2      pipelined
 *   RB_CELL   2      pipelined
 *   ALLOC     2
 *   WRITE     1
 *   SCAN      rows + 3 (2 for an empty table)
 *   RB_COUNT  1
 *
 * s_cmd_ready depends on s_cmd_op: while a LOOKUP / READ answers only those are accepted.
 *
 * A table id, column or scan spec outside the parameters answers NULL and writes nothing.
 */
module rgw_doe_table #(
    // tables (a power of two)
    parameter int TABLES = 8,
    // physical columns per table
    parameter int COLS = 16,
    // rows per table (a power of two)
    parameter int ROWS = 1024,
    // key words the index and scan ports carry (1..6)
    parameter int KEY_WORDS = 6,
    // log2 of the hash buckets per table
    parameter int CL_BUCKETS = $clog2(ROWS) + 1,
    // slots per hash bucket
    parameter int WAYS = 4,
    // scan specs
    parameter int SCANS = 16
) (
    input  wire logic                     clk,
    input  wire logic                     rst,

    input  wire logic                     s_cfg_valid,
    input  wire logic                     s_cfg_scan,
    input  wire logic [7:0]               s_cfg_index,
    input  wire logic [3:0]               s_cfg_field,
    input  wire logic [15:0]              s_cfg_data,

    // clear every table (row counts and index); busy until done
    input  wire logic                     clear,
    output wire logic                     busy,

    input  wire logic                     s_cmd_valid,
    output wire logic                     s_cmd_ready,
    input  wire logic [2:0]               s_cmd_op,
    input  wire logic [7:0]               s_cmd_table,
    input  wire logic [11:0]              s_cmd_col,
    input  wire logic [KEY_WORDS*64-1:0]  s_cmd_key,
    input  wire logic [KEY_WORDS-1:0]     s_cmd_key_null,
    input  wire logic [63:0]              s_cmd_row,
    input  wire logic                     s_cmd_row_null,
    input  wire logic [63:0]              s_cmd_value,
    input  wire logic                     s_cmd_value_null,

    output wire logic                     m_rsp_valid,
    output wire logic [63:0]              m_rsp_value,
    output wire logic                     m_rsp_null,

    output wire logic                     err_index_full,
    output wire logic                     err_table_full
);

import rgw_isa_pkg::*;
import rgw_doe_pkg::*;

localparam int CL_TABLES = TABLES > 1 ? $clog2(TABLES) : 1;
localparam int CL_ROWS = $clog2(ROWS);
localparam int CL_COLS = COLS > 1 ? $clog2(COLS) : 1;
localparam int CL_SCANS = SCANS > 1 ? $clog2(SCANS) : 1;
localparam int CL_WAYS = WAYS > 1 ? $clog2(WAYS) : 1;
localparam int ADDR_W = CL_TABLES + CL_ROWS;
localparam int HADDR_W = CL_TABLES + CL_BUCKETS;
localparam int KEY_W = KEY_WORDS * 64;
localparam int SLOT_W = 1 + CL_ROWS + KEY_W;
localparam int BUCKET_W = WAYS * SLOT_W;
localparam int CELL_W = 65;

initial begin
    if ((1 << CL_TABLES) != TABLES && TABLES != 1) $fatal(1, "rgw_doe_table: TABLES must be a power of two");
    if ((1 << CL_ROWS) != ROWS) $fatal(1, "rgw_doe_table: ROWS must be a power of two");
    if (KEY_WORDS < 1 || KEY_WORDS > MAX_KEY_WORDS) $fatal(1, "rgw_doe_table: KEY_WORDS must be 1..6");
    if (COLS > 4096) $fatal(1, "rgw_doe_table: COLS must fit the 12-bit immediate");
end

typedef enum logic [3:0] {
    ST_IDLE,
    ST_CLEAR,
    ST_LOOKUP,
    ST_ALLOC,
    ST_READ,
    ST_SCAN,
    ST_SCAN_LAST,
    ST_SCAN_DONE
} state_t;

state_t state_reg;

// configuration
logic [2:0]         tab_nkey_reg [TABLES];
logic [CL_COLS-1:0] tab_kcol_reg [TABLES][KEY_WORDS];
logic               tab_kcol_ok_reg [TABLES][KEY_WORDS];
logic [CL_TABLES-1:0] scan_table_reg [SCANS];
logic               scan_table_ok_reg [SCANS];
logic [1:0]         scan_mode_reg [SCANS];
logic [2:0]         scan_nmatch_reg [SCANS];
logic [CL_COLS-1:0] scan_order_reg [SCANS];
logic [CL_COLS-1:0] scan_mcol_reg [SCANS][KEY_WORDS];

logic [CL_ROWS:0]   count_reg [TABLES];

// memories
// packed: an unpacked array here becomes a memory of its own in synthesis, which leaves the
// banks without an output register and so out of block RAM
logic [COLS-1:0][CELL_W-1:0] bank_q;
logic [ADDR_W-1:0]   rd_addr;
logic [ADDR_W-1:0]   wr_addr;
logic [COLS-1:0]     bank_we;
logic [COLS-1:0][CELL_W-1:0] bank_wd;

logic [BUCKET_W-1:0] hmem_q;
logic [HADDR_W-1:0]  h_rd_addr;
logic [HADDR_W-1:0]  h_wr_addr;
logic                h_we;
logic [BUCKET_W-1:0] h_wd;

genvar gc;
generate
    for (gc = 0; gc < COLS; gc++) begin : g_bank
        logic [CELL_W-1:0] mem [2**ADDR_W];
        always_ff @(posedge clk) begin
            if (bank_we[gc]) begin
                mem[wr_addr] <= bank_wd[gc];
            end
            bank_q[gc] <= mem[rd_addr];
        end
    end
endgenerate

logic [BUCKET_W-1:0] hmem [2**HADDR_W];
always_ff @(posedge clk) begin
    if (h_we) begin
        hmem[h_wr_addr] <= h_wd;
    end
    hmem_q <= hmem[h_rd_addr];
end

// command registers
logic [CL_TABLES-1:0] t_reg;
logic [CL_COLS-1:0]   col_reg;
logic [KEY_W-1:0]     key_reg;
logic [KEY_WORDS-1:0] key_null_reg;
logic [CL_ROWS-1:0]   row_reg;
logic [HADDR_W-1:0]   h_addr_reg;
logic [CL_SCANS-1:0]  s_reg;
logic                 rb_reg;

logic                 m_rsp_valid_reg;
logic [63:0]          m_rsp_value_reg;
logic                 m_rsp_null_reg;
logic                 err_index_full_reg;
logic                 err_table_full_reg;

// scan state: row sc_row_reg is being read, sc_data_row_reg is in bank_q
logic [CL_ROWS:0]     sc_row_reg;
logic [CL_ROWS-1:0]   sc_data_row_reg;
logic [CL_ROWS:0]     sc_end_reg;
logic                 sc_have_reg;
logic [CL_ROWS-1:0]   sc_best_row_reg;
logic [63:0]          sc_best_reg;
logic                 sc_best_null_reg;

logic [HADDR_W-1:0]   clr_addr_reg;

logic                 pipe_op;  // the offered command may follow a LOOKUP / READ back to back
logic                 accept;
logic                 lk_null_reg;  // the LOOKUP in flight answers NULL whatever the index holds
logic                 rd_null_reg;  // the READ in flight answers NULL whatever the cell holds

assign pipe_op = s_cmd_op == TCMD_LOOKUP || s_cmd_op == TCMD_READ || s_cmd_op == TCMD_RB_CELL;
assign s_cmd_ready = state_reg == ST_IDLE || ((state_reg == ST_LOOKUP || state_reg == ST_READ) && pipe_op);
assign accept = s_cmd_valid && s_cmd_ready && !(state_reg == ST_IDLE && clear);
assign busy = state_reg == ST_CLEAR;
assign m_rsp_valid = m_rsp_valid_reg;
assign m_rsp_value = m_rsp_value_reg;
assign m_rsp_null = m_rsp_null_reg;
assign err_index_full = err_index_full_reg;
assign err_table_full = err_table_full_reg;

// decode of the command being offered
logic                 cmd_t_ok;
logic [CL_TABLES-1:0] cmd_t;
logic [2:0]           cmd_nkey;
logic                 cmd_key_null;
logic                 cmd_row_ok;
logic [CL_ROWS-1:0]   cmd_row;
logic                 cmd_col_ok;
logic [CL_BUCKETS-1:0] cmd_bucket;
logic [KEY_W-1:0]     cmd_key_masked;
logic                 cmd_s_ok;
logic [CL_SCANS-1:0]  cmd_s;

rgw_doe_hash #(
    .KEY_WORDS(KEY_WORDS),
    .CL_BUCKETS(CL_BUCKETS)
) hash_inst (
    .key(s_cmd_key),
    .n_key(cmd_nkey),
    .idx(cmd_bucket)
);

always_comb begin
    cmd_t_ok = 32'(s_cmd_table) < TABLES;
    cmd_t = CL_TABLES'(s_cmd_table);
    cmd_s_ok = 32'(s_cmd_table) < SCANS;
    cmd_s = CL_SCANS'(s_cmd_table);
    cmd_nkey = tab_nkey_reg[cmd_t];
    cmd_key_null = 1'b0;
    cmd_key_masked = '0;
    for (int i = 0; i < KEY_WORDS; i++) begin
        if (i < 32'(cmd_nkey)) begin
            cmd_key_null = cmd_key_null | s_cmd_key_null[i];
            cmd_key_masked[i*64 +: 64] = s_cmd_key[i*64 +: 64];
        end
    end
    cmd_row = CL_ROWS'(s_cmd_row);
    cmd_row_ok = !s_cmd_row_null && s_cmd_row < 64'(count_reg[cmd_t]);
    cmd_col_ok = 32'(s_cmd_col) < COLS;
end

// hash bucket compare (bucket in hmem_q, key in key_reg)
logic                 hit;
logic [CL_ROWS-1:0]   hit_row;
logic                 free;
logic [CL_WAYS-1:0]   free_way;
logic [SLOT_W-1:0]    slot;

always_comb begin
    hit = 1'b0;
    hit_row = '0;
    free = 1'b0;
    free_way = '0;
    for (int w = WAYS - 1; w >= 0; w--) begin
        slot = hmem_q[w*SLOT_W +: SLOT_W];
        if (slot[SLOT_W-1] && slot[KEY_W-1:0] == key_reg) begin
            hit = 1'b1;
            hit_row = slot[KEY_W +: CL_ROWS];
        end
        if (!slot[SLOT_W-1]) begin
            free = 1'b1;
            free_way = CL_WAYS'(w);
        end
    end
end

// scan row evaluation (row sc_data_row_reg in bank_q)
logic                 sc_match;
logic [CELL_W-1:0]    sc_ord;
logic                 sc_better;
logic [1:0]           sc_mode;
logic [CELL_W-1:0]    sc_cell;

always_comb begin
    sc_mode = scan_mode_reg[s_reg];
    sc_match = 1'b1;
    for (int i = 0; i < KEY_WORDS; i++) begin
        if (i < 32'(scan_nmatch_reg[s_reg])) begin
            sc_cell = bank_q[scan_mcol_reg[s_reg][i]];
            if (key_null_reg[i] || sc_cell[64] || sc_cell[63:0] != key_reg[i*64 +: 64]) begin
                sc_match = 1'b0;
            end
        end
    end
    sc_cell = '0;
    sc_ord = bank_q[scan_order_reg[s_reg]];
    case (sc_mode)
        SCAN_MIN: sc_better = !sc_ord[64] && (!sc_have_reg || $signed(sc_ord[63:0]) < $signed(sc_best_reg));
        SCAN_MAX: sc_better = !sc_ord[64] && (!sc_have_reg || $signed(sc_ord[63:0]) > $signed(sc_best_reg));
        SCAN_FIRST_ASC: sc_better = !sc_have_reg || (sc_ord[64] && !sc_best_null_reg)
            || (!sc_ord[64] && !sc_best_null_reg && $signed(sc_ord[63:0]) < $signed(sc_best_reg));
        default: sc_better = !sc_have_reg || (!sc_ord[64] && sc_best_null_reg)
            || (!sc_ord[64] && !sc_best_null_reg && $signed(sc_ord[63:0]) > $signed(sc_best_reg));
    endcase
end

// memory address and write selection
always_comb begin
    rd_addr = {t_reg, row_reg};
    h_rd_addr = h_addr_reg;
    wr_addr = {t_reg, row_reg};
    bank_we = '0;
    h_we = 1'b0;
    h_wr_addr = h_addr_reg;
    h_wd = hmem_q;
    for (int j = 0; j < COLS; j++) begin
        bank_wd[j] = {s_cmd_value_null, s_cmd_value};
    end

    if (state_reg == ST_IDLE || state_reg == ST_LOOKUP || state_reg == ST_READ) begin
        // the offered command's row and bucket are read as it is accepted
        rd_addr = {cmd_t, cmd_row};
        h_rd_addr = {cmd_t, cmd_bucket};
    end

    case (state_reg)
        ST_IDLE: begin
            wr_addr = {cmd_t, cmd_row};
            if (accept && s_cmd_op == TCMD_WRITE && cmd_t_ok && cmd_row_ok && cmd_col_ok) begin
                bank_we[CL_COLS'(s_cmd_col)] = 1'b1;
            end
        end
        ST_ALLOC: begin
            // the new row: key words in the key columns, NULL elsewhere
            wr_addr = {t_reg, count_reg[t_reg][CL_ROWS-1:0]};
            for (int j = 0; j < COLS; j++) begin
                bank_wd[j] = {1'b1, 64'd0};
                for (int i = 0; i < KEY_WORDS; i++) begin
                    if (i < 32'(tab_nkey_reg[t_reg]) && tab_kcol_ok_reg[t_reg][i]
                            && 32'(tab_kcol_reg[t_reg][i]) == j) begin
                        bank_wd[j] = {key_null_reg[i], key_reg[i*64 +: 64]};
                    end
                end
            end
            if (!count_reg[t_reg][CL_ROWS]) begin
                if (rb_reg) begin
                    // a NULL key word (or no key): stored, not indexed
                    bank_we = '1;
                end else if (free && !hit) begin
                    bank_we = '1;
                    h_we = 1'b1;
                    h_wd[32'(free_way)*SLOT_W +: SLOT_W] = {1'b1, count_reg[t_reg][CL_ROWS-1:0], key_reg};
                end
            end
        end
        ST_SCAN: begin
            rd_addr = {t_reg, sc_row_reg[CL_ROWS-1:0]};
        end
        ST_CLEAR: begin
            h_we = 1'b1;
            h_wr_addr = clr_addr_reg;
            h_wd = '0;
        end
        default: begin
        end
    endcase
end

always_ff @(posedge clk) begin
    m_rsp_valid_reg <= 1'b0;

    if (s_cfg_valid && state_reg == ST_IDLE) begin
        if (!s_cfg_scan) begin
            if (32'(s_cfg_index) < TABLES) begin
                if (s_cfg_field == 0) begin
                    tab_nkey_reg[CL_TABLES'(s_cfg_index)] <= 32'(s_cfg_data) > KEY_WORDS ? 3'(KEY_WORDS) : s_cfg_data[2:0];
                end else if (32'(s_cfg_field) <= KEY_WORDS) begin
                    tab_kcol_reg[CL_TABLES'(s_cfg_index)][32'(s_cfg_field) - 1] <= CL_COLS'(s_cfg_data);
                    tab_kcol_ok_reg[CL_TABLES'(s_cfg_index)][32'(s_cfg_field) - 1] <= 32'(s_cfg_data) < COLS;
                end
            end
        end else if (32'(s_cfg_index) < SCANS) begin
            case (s_cfg_field)
                4'd0: begin
                    scan_table_reg[CL_SCANS'(s_cfg_index)] <= CL_TABLES'(s_cfg_data);
                    scan_table_ok_reg[CL_SCANS'(s_cfg_index)] <= 32'(s_cfg_data) < TABLES;
                end
                4'd1: scan_mode_reg[CL_SCANS'(s_cfg_index)] <= s_cfg_data[1:0];
                4'd2: scan_nmatch_reg[CL_SCANS'(s_cfg_index)] <= 32'(s_cfg_data) > KEY_WORDS ? 3'(KEY_WORDS) : s_cfg_data[2:0];
                4'd3: scan_order_reg[CL_SCANS'(s_cfg_index)] <= CL_COLS'(s_cfg_data);
                default: begin
                    if (32'(s_cfg_field) >= 4 && 32'(s_cfg_field) < 4 + KEY_WORDS) begin
                        scan_mcol_reg[CL_SCANS'(s_cfg_index)][32'(s_cfg_field) - 4] <= CL_COLS'(s_cfg_data);
                    end
                end
            endcase
        end
    end

    case (state_reg)
        ST_IDLE: begin
            if (clear) begin
                clr_addr_reg <= '0;
                for (int t = 0; t < TABLES; t++) begin
                    count_reg[t] <= '0;
                end
                err_index_full_reg <= 1'b0;
                err_table_full_reg <= 1'b0;
                state_reg <= ST_CLEAR;
            end
        end
        ST_CLEAR: begin
            clr_addr_reg <= clr_addr_reg + 1'b1;
            if (clr_addr_reg == '1) begin
                state_reg <= ST_IDLE;
            end
        end
        ST_LOOKUP: begin
            m_rsp_valid_reg <= 1'b1;
            m_rsp_null_reg <= lk_null_reg || !hit;
            m_rsp_value_reg <= !lk_null_reg && hit ? 64'(hit_row) : '0;
            state_reg <= ST_IDLE;
        end
        ST_READ: begin
            m_rsp_valid_reg <= 1'b1;
            m_rsp_null_reg <= rd_null_reg || bank_q[col_reg][64];
            m_rsp_value_reg <= rd_null_reg || bank_q[col_reg][64] ? '0 : bank_q[col_reg][63:0];
            state_reg <= ST_IDLE;
        end
        ST_ALLOC: begin
            m_rsp_valid_reg <= 1'b1;
            m_rsp_value_reg <= '0;
            m_rsp_null_reg <= 1'b1;
            if (count_reg[t_reg][CL_ROWS]) begin
                err_table_full_reg <= 1'b1;
            end else if (rb_reg || (free && !hit)) begin
                m_rsp_null_reg <= 1'b0;
                m_rsp_value_reg <= 64'(count_reg[t_reg]);
                count_reg[t_reg] <= count_reg[t_reg] + 1'b1;
            end else if (!hit) begin
                // the key is new but its bucket is full
                err_index_full_reg <= 1'b1;
            end
            state_reg <= ST_IDLE;
        end
        ST_SCAN: begin
            // row sc_row_reg is read this cycle; the previous one is evaluated
            sc_row_reg <= sc_row_reg + 1'b1;
            sc_data_row_reg <= sc_row_reg[CL_ROWS-1:0];
            if (sc_row_reg != 0 && sc_match && sc_better) begin
                sc_have_reg <= 1'b1;
                sc_best_row_reg <= sc_data_row_reg;
                sc_best_reg <= sc_ord[63:0];
                sc_best_null_reg <= sc_ord[64];
            end
            if (sc_row_reg + 1'b1 == sc_end_reg) begin
                state_reg <= ST_SCAN_LAST;
            end
        end
        ST_SCAN_LAST: begin
            if (sc_match && sc_better) begin
                sc_have_reg <= 1'b1;
                sc_best_row_reg <= sc_data_row_reg;
                sc_best_reg <= sc_ord[63:0];
                sc_best_null_reg <= sc_ord[64];
            end
            state_reg <= ST_SCAN_DONE;
        end
        ST_SCAN_DONE: begin
            m_rsp_valid_reg <= 1'b1;
            m_rsp_null_reg <= !sc_have_reg;
            m_rsp_value_reg <= sc_have_reg ? 64'(sc_best_row_reg) : '0;
            state_reg <= ST_IDLE;
        end
        default: state_reg <= ST_IDLE;
    endcase

    // a command is accepted in ST_IDLE, or behind a LOOKUP / READ that answers at this edge
    if (accept) begin
        t_reg <= cmd_t;
        col_reg <= CL_COLS'(s_cmd_col);
        key_reg <= cmd_key_masked;
        key_null_reg <= s_cmd_key_null;
        row_reg <= cmd_row;
        h_addr_reg <= {cmd_t, cmd_bucket};
        s_reg <= cmd_s;
        rb_reg <= 1'b0;
        case (s_cmd_op)
            TCMD_LOOKUP: begin
                lk_null_reg <= !cmd_t_ok || cmd_nkey == 0 || cmd_key_null;
                state_reg <= ST_LOOKUP;
            end
            TCMD_READ, TCMD_RB_CELL: begin
                rd_null_reg <= !cmd_t_ok || !cmd_col_ok || (s_cmd_op == TCMD_READ && !cmd_row_ok);
                state_reg <= ST_READ;
            end
            TCMD_ALLOC: begin
                if (!cmd_t_ok) begin
                    m_rsp_valid_reg <= 1'b1;
                    m_rsp_value_reg <= '0;
                    m_rsp_null_reg <= 1'b1;
                end else begin
                    // rb_reg marks a row that is stored without an index entry
                    rb_reg <= cmd_nkey == 0 || cmd_key_null;
                    state_reg <= ST_ALLOC;
                end
            end
            TCMD_SCAN: begin
                if (!cmd_s_ok || !scan_table_ok_reg[cmd_s]) begin
                    m_rsp_valid_reg <= 1'b1;
                    m_rsp_value_reg <= '0;
                    m_rsp_null_reg <= 1'b1;
                end else begin
                    t_reg <= scan_table_reg[cmd_s];
                    key_reg <= s_cmd_key;
                    sc_row_reg <= '0;
                    sc_end_reg <= count_reg[scan_table_reg[cmd_s]];
                    sc_have_reg <= 1'b0;
                    sc_best_null_reg <= 1'b1;
                    sc_best_reg <= '0;
                    sc_best_row_reg <= '0;
                    state_reg <= count_reg[scan_table_reg[cmd_s]] == 0 ? ST_SCAN_DONE : ST_SCAN;
                end
            end
            TCMD_RB_COUNT: begin
                m_rsp_valid_reg <= 1'b1;
                m_rsp_null_reg <= !cmd_t_ok;
                m_rsp_value_reg <= cmd_t_ok ? 64'(count_reg[cmd_t]) : '0;
            end
            default: begin
                // WRITE (done by the memory write above) and unknown commands answer NULL
                m_rsp_valid_reg <= 1'b1;
                m_rsp_value_reg <= '0;
                m_rsp_null_reg <= 1'b1;
            end
        endcase
    end

    if (rst) begin
        // a reset clears the tables: the index must not hold stale entries
        state_reg <= ST_CLEAR;
        clr_addr_reg <= '0;
        m_rsp_valid_reg <= 1'b0;
        err_index_full_reg <= 1'b0;
        err_table_full_reg <= 1'b0;
        for (int t = 0; t < TABLES; t++) begin
            count_reg[t] <= '0;
            tab_nkey_reg[t] <= '0;
        end
        for (int s = 0; s < SCANS; s++) begin
            scan_table_ok_reg[s] <= 1'b0;
        end
    end
end

endmodule

`resetall
