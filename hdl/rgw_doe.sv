// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Database Offload Engine: runs the sections of a riskgw program image (riskgw/doe/isa.py)
 * on events, with the tables in on-chip memory (rgw_doe_table), LANES ALU lanes and the
 * registers in rgw_doe_regs (a bank per lane and a live value table, not flip-flops with a
 * REGS:1 multiplexer per read port).
 *
 * Load port (s_cfg_*): one 64-bit access per s_cfg_valid & s_cfg_ready; reads answer on
 * m_cfg_rd_valid.  Accepted only between events.  Address = {region[31:28], index[27:0]}:
 *
 *   region  index                                   access  data
 *   0x0     0                                       r       ID: {32'h52475744 ("RGWD"), 16'h0, ABI_VERSION[15:0]}
 *   0x0     1                                       r       {RULES[15:0], ROWS[15:0] (log2),
 *                                                           TABLES[7:0], COLS[7:0], LANES[7:0], 8'h0}
 *   0x0     2                                       r       status: bit 0 busy, 1 index full, 2 table full
 *   0x0     3                                       w       clear every table (rows and index)
 *   0x0     4                                       r       cycles of the last event (accept to decision)
 *   0x1     {bundle, lane[CL_LANES-1:0], half}      w       instruction word half (0: bits 63:0)
 *   0x2     section: event 0..4, LOAD of table t: 8+t   w   {length in bundles[31:0], first bundle[31:0]}
 *                                                           (5..7 unused: keep them empty)
 *   0x3     {constant, half}                        w       half 0: value; half 1: bit 0 = NULL
 *   0x4     {table[7:0], field[3:0]}                w       table config (rgw_doe_table)
 *   0x5     {scan[7:0], field[3:0]}                 w       scan spec config (rgw_doe_table)
 *   0x6     {table, col[CL_COLS-1:0], row[CL_ROWS-1:0], half}  r   cell: half 0 value, 1 NULL bit
 *   0x7     table                                   r       row count
 *
 * A reset clears the tables (taking 2^CL_BUCKETS * TABLES cycles, status bit 0 busy), the section
 * table and the constants: load the image again after it.
 *
 * Program memory holds one bundle per row of LANES instruction slots (unused slots NOP); a
 * section is a run of rows.  Constant c lives in register REG_CONST_BASE + c.
 *
 * Event stream (s_evt, rgw_doe_evt_if):
 *
 *   | tag[TAG_W-1:0] | kind[2:0] (rgw_isa_pkg::event_t) | table_id[7:0] (LOAD) | nulls[IN_WORDS] | data[IN_WORDS*64] |
 *
 *   NEW, FILL, REJECT, CANCEL carry the 10 trade_order words in data words 0..9; LOAD carries a
 *   row of `table` (physical words in column order).  Missing words are NULL.
 *
 * Decision stream (m_dec, rgw_doe_dec_if), one per event, in order:
 *
 *   | tag[TAG_W-1:0] | accept | failed[RULES-1:0] (bit i: rule id i failed) |
 *
 *   accept = no rule failed, for NEW; 1 for every other kind.  A NEW's decision leaves when its
 *   NEW section ends, before its ACCEPT section runs; the next event is taken once the ACCEPT
 *   section has ended and the decision has been taken, so it sees the ACCEPT section's updates.
 *
 * Execution: a section runs bundle by bundle.  Every register starts NULL except the inputs and
 * the constants.  In a bundle the ALU instructions issue together on their lanes; the table
 * instructions go to the table unit in lane order, reads (LOOKUP, READ, SCAN) first and writes
 * (ALLOC, WRITE) after them, so that all of them see the tables as they were before the bundle;
 * register results and failed rules take effect at the end of the bundle.
 * A NEW that fails no rule runs the ACCEPT section with fresh registers.
 *
 * Cycles: a bundle of single-cycle ALU ops and RULEs commits in the cycle it is decoded (1 cycle
 * per bundle).  A bundle with table instructions issues its first one in its decode cycle; the
 * reads (LOOKUP, READ) go one per cycle into the pipelined table unit and answer 2 cycles later,
 * then the writes follow (WRITE 1 cycle, ALLOC 2), and the bundle commits in the cycle the last
 * answer arrives: k reads alone take k + 2 cycles.  A SCAN holds the table unit for rows + 3
 * cycles.  A DIV/MOD lane holds the commit until 2 + 64 / DIV_BITS cycles after decode.  An
 * event adds 2 cycles (decision).  A NEW that passes runs the ACCEPT section after its decision
 * has left: the ACCEPT section adds to the time until the next event is taken, not to the NEW's
 * latency.
 */
module rgw_doe #(
    // instruction slots per bundle (ALU lanes)
    parameter int LANES = 8,
    // registers (a power of two, > 64 + constants)
    parameter int REGS = 256,
    // bundles of program memory (a power of two)
    parameter int PROG_ROWS = 256,
    // tables (a power of two)
    parameter int TABLES = 8,
    // physical columns per table (a power of two)
    parameter int COLS = 16,
    // rows per table (a power of two)
    parameter int ROWS = 1024,
    // key words of LOOKUP / ALLOC / SCAN (1..6)
    parameter int KEY_WORDS = 6,
    // log2 of the hash buckets per table
    parameter int CL_BUCKETS = $clog2(ROWS) + 1,
    // slots per hash bucket
    parameter int WAYS = 4,
    // scan specs
    parameter int SCANS = 16,
    // rules (width of the failed-rule mask)
    parameter int RULES = 64,
    // input words of an event (>= 10; a LOAD row has at most this many words)
    parameter int IN_WORDS = 16,
    // order tag width
    parameter int TAG_W = 32,
    // quotient bits per cycle of the dividers
    parameter int DIV_BITS = 4
) (
    input  wire logic                      clk,
    input  wire logic                      rst,

    input  wire logic                      s_cfg_valid,
    output wire logic                      s_cfg_ready,
    input  wire logic                      s_cfg_write,
    input  wire logic [31:0]               s_cfg_addr,
    input  wire logic [63:0]               s_cfg_data,
    output wire logic                      m_cfg_rd_valid,
    output wire logic [63:0]               m_cfg_rd_data,

    rgw_doe_evt_if.snk                     s_evt,
    rgw_doe_dec_if.src                     m_dec
);

import rgw_isa_pkg::*;
import rgw_doe_pkg::*;

localparam int CL_LANES = LANES > 1 ? $clog2(LANES) : 1;
localparam int CL_REGS = $clog2(REGS);
localparam int CL_PROG = $clog2(PROG_ROWS);
localparam int CL_TABLES = TABLES > 1 ? $clog2(TABLES) : 1;
localparam int CL_COLS = COLS > 1 ? $clog2(COLS) : 1;
localparam int CL_ROWS = $clog2(ROWS);
localparam int CL_RULES = RULES > 1 ? $clog2(RULES) : 1;
localparam int SECTIONS = 8 + TABLES;
localparam int CL_SECTIONS = $clog2(SECTIONS);

initial begin
    if ((1 << CL_REGS) != REGS || REGS <= N_INPUT_REGS + 3) $fatal(1, "rgw_doe: REGS must be a power of two above 67");
    if (REGS > (1 << REG_W)) $fatal(1, "rgw_doe: REGS must fit the register field");
    if ((1 << CL_PROG) != PROG_ROWS) $fatal(1, "rgw_doe: PROG_ROWS must be a power of two");
    if (COLS > 1 && (1 << CL_COLS) != COLS) $fatal(1, "rgw_doe: COLS must be a power of two");
    if (IN_WORDS < N_EVENT_REGS || IN_WORDS > N_INPUT_REGS) $fatal(1, "rgw_doe: IN_WORDS must be 10..64");
    if (1 + CL_ROWS + CL_COLS + CL_TABLES > 28) $fatal(1, "rgw_doe: cell read-back address exceeds 28 bits");
    if ($bits(s_evt.data) != IN_WORDS * 64 || $bits(s_evt.nulls) != IN_WORDS || $bits(s_evt.tag) != TAG_W)
        $fatal(1, "rgw_doe: event interface widths disagree with IN_WORDS / TAG_W");
    if ($bits(m_dec.failed) != RULES || $bits(m_dec.tag) != TAG_W)
        $fatal(1, "rgw_doe: decision interface widths disagree with RULES / TAG_W");
end

typedef enum logic [3:0] {
    ST_IDLE,
    ST_DECODE,
    ST_TABLE,
    ST_ALU,
    ST_SEC_END,
    ST_CFG_RD
} state_t;

state_t state_reg;

// ---------------------------------------------------------------- registers and memories

// register file (rgw_doe_regs): read ports 3*l .. 3*l+2 are operands A, B, C of lane l, then the
// table command's predicate, then its key words beyond the third
localparam int RD_PORTS = 3 * LANES + 1 + (KEY_WORDS > 3 ? KEY_WORDS - 3 : 0);
localparam int RD_PRED = 3 * LANES;
logic [RD_PORTS-1:0][REG_W-1:0] rf_rd_addr;
logic [RD_PORTS-1:0][64:0]      rf_rd_data;
logic [LANES-1:0]               rf_wr_en;
logic [LANES-1:0][REG_W-1:0]    rf_wr_addr;
logic [LANES-1:0][64:0]         rf_wr_data;
logic                           rf_c_we;
logic [CL_REGS-1:0]             rf_c_addr;

// packed, so that synthesis sees the program memories' output registers (see rgw_doe_table's bank_q)
logic [LANES-1:0][INSN_W-1:0] prog_q;
logic [CL_PROG-1:0] pc_reg;
logic [CL_PROG-1:0] pc_next;  // prog_q is read from pc_next, so it always holds bundle pc_reg
logic [31:0]        remain_reg;

logic [31:0]        sec_start_reg [SECTIONS];
logic [31:0]        sec_len_reg [SECTIONS];
logic               phase_new_reg;  // running the NEW section (ACCEPT may follow)

logic [TAG_W-1:0]   tag_reg;
logic [2:0]         kind_reg;
logic [IN_WORDS*64-1:0] in_data_reg;
logic [IN_WORDS-1:0] in_null_reg;
logic [RULES-1:0]   failed_reg;
logic [31:0]        cycles_reg;
logic [31:0]        last_cycles_reg;

logic               cfg_wr;
logic [3:0]         cfg_region;
logic [27:0]        cfg_index;
assign cfg_region = s_cfg_addr[31:28];
assign cfg_index = s_cfg_addr[27:0];

logic               table_busy;
assign s_cfg_ready = state_reg == ST_IDLE && !table_busy && !m_cfg_rd_valid_reg;
assign cfg_wr = s_cfg_valid && s_cfg_ready && s_cfg_write;

// program memory: one 64-bit memory per half instruction slot, so the load port writes halves
genvar gl, gh;
generate
    for (gl = 0; gl < LANES; gl++) begin : g_prog_lane
        for (gh = 0; gh < 2; gh++) begin : g_half
            logic [63:0] mem [PROG_ROWS];
            logic we;
            assign we = cfg_wr && cfg_region == 4'h1 && 32'(cfg_index[CL_LANES:1]) == gl
                && cfg_index[0] == 1'(gh);
            always_ff @(posedge clk) begin
                if (we) begin
                    mem[cfg_index[CL_LANES+1 +: CL_PROG]] <= s_cfg_data;
                end
                prog_q[gl][gh*64 +: 64] <= mem[pc_next];
            end
        end
    end
endgenerate

// ---------------------------------------------------------------- decoded bundle

logic [INSN_W-1:0]  bundle_reg [LANES];

// Waiver: the field extractors take a whole instruction word and use only their field.
/* verilator lint_off UNUSEDSIGNAL */
function automatic logic [REG_W-1:0] fld_reg(input logic [INSN_W-1:0] insn, input int lsb);
    return insn[lsb +: REG_W];
endfunction

function automatic logic [7:0] fld_op(input logic [INSN_W-1:0] insn);
    return insn[INSN_OP_LSB +: INSN_OP_W];
endfunction
/* verilator lint_on UNUSEDSIGNAL */

function automatic logic is_alu(input logic [7:0] op);
    case (op)
        OP_MOV, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_NEG, OP_ABS, OP_EQ, OP_NE, OP_LT, OP_LE,
        OP_GT, OP_GE, OP_AND, OP_OR, OP_NOT, OP_ISNULL, OP_NOTNULL, OP_SEL, OP_COALESCE,
        OP_RANGE32: return 1'b1;
        default: return 1'b0;
    endcase
endfunction

function automatic logic is_tread(input logic [7:0] op);
    return op == OP_LOOKUP || op == OP_READ || op == OP_SCAN;
endfunction

function automatic logic is_twrite(input logic [7:0] op);
    return op == OP_ALLOC || op == OP_WRITE;
endfunction


// ---------------------------------------------------------------- ALU lanes

logic [LANES-1:0]   alu_issue;
logic [LANES-1:0]   alu_ready;
logic [LANES-1:0]   alu_m_valid;
logic [63:0]        alu_m_value [LANES];
logic [LANES-1:0]   alu_m_null;
logic [63:0]        alu_c_value [LANES];
logic [LANES-1:0]   alu_c_null;
logic               fast;  // the bundle in prog_q commits in its decode cycle
logic [LANES-1:0]   alu_pending_reg;

logic [63:0]        res_val_reg [LANES];
logic [LANES-1:0]   res_null_reg;
logic [LANES-1:0]   res_we_reg;
logic [RULES-1:0]   rule_fail_reg;
logic               alu_done;  // every ALU lane of the bundle has answered (or answers now)

// Operands A, B and C of every lane, read from the register file for the bundle in prog_q. These
// are the register file's read ports (each a REGS:1 mux of 65 bits); the rules and the table
// command take their A, B and C from here instead of reading the registers again.
logic [LANES-1:0][64:0] lane_a;
logic [LANES-1:0][64:0] lane_b;
logic [LANES-1:0][64:0] lane_c;

genvar ga;
generate
    for (ga = 0; ga < LANES; ga++) begin : g_alu
        logic [64:0] a, b, c;
        assign rf_rd_addr[3*ga] = fld_reg(prog_q[ga], INSN_A_LSB);
        assign rf_rd_addr[3*ga+1] = fld_reg(prog_q[ga], INSN_B_LSB);
        assign rf_rd_addr[3*ga+2] = fld_reg(prog_q[ga], INSN_C_LSB);
        assign a = rf_rd_data[3*ga];
        assign b = rf_rd_data[3*ga+1];
        assign c = rf_rd_data[3*ga+2];
        assign lane_a[ga] = a;
        assign lane_b[ga] = b;
        assign lane_c[ga] = c;
        assign alu_issue[ga] = state_reg == ST_DECODE && !fast && is_alu(fld_op(prog_q[ga]));

        rgw_doe_alu #(
            .DIV_BITS(DIV_BITS)
        ) alu_inst (
            .clk(clk),
            .rst(rst),
            .s_valid(alu_issue[ga]),
            .s_ready(alu_ready[ga]),
            .s_op(fld_op(prog_q[ga])),
            .s_a(a[63:0]),
            .s_a_null(a[64]),
            .s_b(b[63:0]),
            .s_b_null(b[64]),
            .s_c(c[63:0]),
            .s_c_null(c[64]),
            .m_valid(alu_m_valid[ga]),
            .m_value(alu_m_value[ga]),
            .m_null(alu_m_null[ga]),
            .c_value(alu_c_value[ga]),
            .c_null(alu_c_null[ga])
        );
    end
endgenerate

// rule results of the bundle in prog_q
logic [RULES-1:0]   rule_fail;
always_comb begin
    rule_fail = '0;
    for (int l = 0; l < LANES; l++) begin
        if (fld_op(prog_q[l]) == OP_RULE && 32'(prog_q[l][INSN_IMM_LSB +: INSN_IMM_W]) < RULES) begin
            if (truthy(lane_a[l]) && !truthy(lane_b[l])) begin
                rule_fail[CL_RULES'(prog_q[l][INSN_IMM_LSB +: INSN_IMM_W])] = 1'b1;
            end
        end
    end
end

function automatic logic truthy(input logic [64:0] v);
    return !v[64] && v[63:0] != 0;
endfunction

logic has_table_op;
logic has_tread;
logic has_div;
logic b_has_twrite;  // the bundle in execution has table writes
always_comb begin
    has_table_op = 1'b0;
    has_tread = 1'b0;
    has_div = 1'b0;
    b_has_twrite = 1'b0;
    for (int l = 0; l < LANES; l++) begin
        has_tread = has_tread | is_tread(fld_op(prog_q[l]));
        b_has_twrite = b_has_twrite | is_twrite(fld_op(bundle_reg[l]));
        has_table_op = has_table_op | is_tread(fld_op(prog_q[l])) | is_twrite(fld_op(prog_q[l]));
        has_div = has_div | fld_op(prog_q[l]) == OP_DIV | fld_op(prog_q[l]) == OP_MOD;
    end
    fast = !has_table_op && !has_div;
end

// ---------------------------------------------------------------- table unit

logic                 t_cmd_valid;
logic                 t_cmd_ready;
logic [2:0]           t_cmd_op;
logic [7:0]           t_cmd_table;
logic [11:0]          t_cmd_col;
logic [KEY_WORDS*64-1:0] t_cmd_key;
logic [KEY_WORDS-1:0] t_cmd_key_null;
logic [63:0]          t_cmd_row;
logic                 t_cmd_row_null;
logic [63:0]          t_cmd_value;
logic                 t_cmd_value_null;
logic                 t_rsp_valid;
logic [63:0]          t_rsp_value;
logic                 t_rsp_null;
logic                 t_cfg_valid;
logic                 t_clear;
logic                 err_index_full;
logic                 err_table_full;

rgw_doe_table #(
    .TABLES(TABLES),
    .COLS(COLS),
    .ROWS(ROWS),
    .KEY_WORDS(KEY_WORDS),
    .CL_BUCKETS(CL_BUCKETS),
    .WAYS(WAYS),
    .SCANS(SCANS)
) table_inst (
    .clk(clk),
    .rst(rst),
    .s_cfg_valid(t_cfg_valid),
    .s_cfg_scan(cfg_region == 4'h5),
    .s_cfg_index(cfg_index[11:4]),
    .s_cfg_field(cfg_index[3:0]),
    .s_cfg_data(s_cfg_data[15:0]),
    .clear(t_clear),
    .busy(table_busy),
    .s_cmd_valid(t_cmd_valid),
    .s_cmd_ready(t_cmd_ready),
    .s_cmd_op(t_cmd_op),
    .s_cmd_table(t_cmd_table),
    .s_cmd_col(t_cmd_col),
    .s_cmd_key(t_cmd_key),
    .s_cmd_key_null(t_cmd_key_null),
    .s_cmd_row(t_cmd_row),
    .s_cmd_row_null(t_cmd_row_null),
    .s_cmd_value(t_cmd_value),
    .s_cmd_value_null(t_cmd_value_null),
    .m_rsp_valid(t_rsp_valid),
    .m_rsp_value(t_rsp_value),
    .m_rsp_null(t_rsp_null),
    .err_index_full(err_index_full),
    .err_table_full(err_table_full)
);

assign t_cfg_valid = cfg_wr && (cfg_region == 4'h4 || cfg_region == 4'h5);
assign t_clear = cfg_wr && cfg_region == 4'h0 && cfg_index == 28'd3;

// table phase: lane tl_reg onwards, reads first (tpass_reg = 0), then writes.  Commands issue
// back to back when the table unit takes them; the lanes of the commands in flight wait in a
// queue (answers come in order).  A pass ends when every lane is issued and answered.
logic [CL_LANES:0]    tl_reg;
logic                 tpass_reg;
logic [CL_LANES-1:0]  tq_reg [LANES];
logic [CL_LANES:0]    tq_head_reg;
logic [CL_LANES:0]    tq_tail_reg;
logic [CL_LANES-1:0]  tq_lane;
logic                 t_issue;
logic                 t_pass_done;

logic                 tsel_found;
logic [CL_LANES-1:0]  tsel_lane;
logic [INSN_W-1:0]    tsel_insn;
logic [7:0]           tsel_op;
logic                 tsel_pred;
logic [64:0]          tsel_a, tsel_b;

// the table phase starts in the decode cycle, on the bundle still in prog_q
logic [INSN_W-1:0]    exec_insn [LANES];
logic                 t_active;
logic [CL_LANES:0]    cur_tl;
logic                 cur_pass;
logic [CL_LANES:0]    cur_tail;

always_comb begin
    t_active = state_reg == ST_TABLE || (state_reg == ST_DECODE && has_table_op);
    for (int l = 0; l < LANES; l++) begin
        exec_insn[l] = state_reg == ST_DECODE ? prog_q[l] : bundle_reg[l];
    end
    cur_tl = state_reg == ST_DECODE ? '0 : tl_reg;
    cur_pass = state_reg == ST_DECODE ? !has_tread : tpass_reg;
    cur_tail = state_reg == ST_DECODE ? '0 : tq_tail_reg;
end

always_comb begin
    tsel_found = 1'b0;
    tsel_lane = '0;
    for (int l = LANES - 1; l >= 0; l--) begin
        if (l >= 32'(cur_tl) && (cur_pass ? is_twrite(fld_op(exec_insn[l])) : is_tread(fld_op(exec_insn[l])))) begin
            tsel_found = 1'b1;
            tsel_lane = CL_LANES'(l);
        end
    end
    tsel_insn = exec_insn[tsel_lane];
    tsel_op = fld_op(tsel_insn);
end

// apart from the selection above, which addresses the register file's read ports
always_comb begin
    tsel_pred = truthy(rf_rd_data[RD_PRED]);
    // prog_q holds the bundle in execution from its decode cycle to its commit (pc_next stays on
    // it), so the lane's own operand reads serve the table command
    tsel_a = lane_a[tsel_lane];
    tsel_b = lane_b[tsel_lane];

    t_cmd_table = tsel_insn[INSN_TABLE_LSB +: INSN_TABLE_W];
    t_cmd_col = tsel_insn[INSN_IMM_LSB +: INSN_IMM_W];
    t_cmd_row = tsel_a[63:0];
    t_cmd_row_null = tsel_a[64];
    t_cmd_value = tsel_b[63:0];
    t_cmd_value_null = tsel_b[64];
    for (int k = 0; k < KEY_WORDS; k++) begin
        logic [64:0] w;
        // key words 0..2 are operands A..C; further ones have read ports of their own
        case (k)
            0: w = lane_a[tsel_lane];
            1: w = lane_b[tsel_lane];
            2: w = lane_c[tsel_lane];
            default: w = rf_rd_data[RD_PRED + k - 2];
        endcase
        t_cmd_key[k*64 +: 64] = w[63:0];
        t_cmd_key_null[k] = w[64];
    end
    case (tsel_op)
        OP_LOOKUP: t_cmd_op = TCMD_LOOKUP;
        OP_READ: t_cmd_op = TCMD_READ;
        OP_ALLOC: t_cmd_op = TCMD_ALLOC;
        OP_WRITE: t_cmd_op = TCMD_WRITE;
        default: t_cmd_op = TCMD_SCAN;
    endcase
    // a predicated write whose predicate is not TRUE (or WRITE to a NULL row) is skipped
    t_cmd_valid = t_active && tsel_found
        && !(tsel_op == OP_ALLOC && !tsel_pred)
        && !(tsel_op == OP_WRITE && (!tsel_pred || tsel_a[64]));

    // read-back through the table unit
    if (state_reg == ST_IDLE) begin
        t_cmd_valid = s_cfg_valid && s_cfg_ready && !s_cfg_write && (cfg_region == 4'h6 || cfg_region == 4'h7);
        t_cmd_op = cfg_region == 4'h7 ? TCMD_RB_COUNT : TCMD_RB_CELL;
        t_cmd_table = 8'(cfg_region == 4'h7 ? cfg_index : cfg_index >> (1 + CL_ROWS + CL_COLS));
        t_cmd_col = 12'(cfg_index[1 + CL_ROWS +: CL_COLS]);
        t_cmd_row = 64'(cfg_index[1 +: CL_ROWS]);
        t_cmd_row_null = 1'b0;
    end
end

assign alu_done = (alu_pending_reg & ~alu_m_valid) == 0 && &alu_ready;

// end of the bundle's table phase, and the commit (in the same cycle when no ALU lane is busy)
logic                 table_end;
logic                 commit_now;
logic [LANES-1:0]     fin_we;
logic [63:0]          fin_val [LANES];
logic [LANES-1:0]     fin_null;

assign table_end = state_reg == ST_TABLE && t_pass_done && (tpass_reg || !b_has_twrite);
assign commit_now = alu_done && ((state_reg == ST_ALU) || table_end);

always_comb begin
    for (int l = 0; l < LANES; l++) begin
        if (state_reg == ST_TABLE && t_rsp_valid && 32'(tq_lane) == l && fld_op(bundle_reg[l]) != OP_WRITE) begin
            fin_we[l] = 1'b1;
            fin_val[l] = t_rsp_value;
            fin_null[l] = t_rsp_null;
        end else if (alu_m_valid[l]) begin
            fin_we[l] = 1'b1;
            fin_val[l] = alu_m_value[l];
            fin_null[l] = alu_m_null[l];
        end else begin
            fin_we[l] = res_we_reg[l];
            fin_val[l] = res_val_reg[l];
            fin_null[l] = res_null_reg[l];
        end
    end
end

// kept apart from the command mux: the table unit's ready depends on the command it is offered
assign t_issue = t_cmd_valid && t_cmd_ready;
assign tq_lane = tq_reg[tq_head_reg[CL_LANES-1:0]];
// nothing left to issue and the last answer (if any) arrives now
assign t_pass_done = !tsel_found
    && (tq_tail_reg == tq_head_reg || (t_rsp_valid && tq_tail_reg == tq_head_reg + 1'b1));

// ---------------------------------------------------------------- register file

assign rf_rd_addr[RD_PRED] = fld_reg(tsel_insn, INSN_PRED_LSB);
genvar gk;
generate
    for (gk = 3; gk < KEY_WORDS; gk++) begin : g_key_rd
        assign rf_rd_addr[RD_PRED + gk - 2] = fld_reg(tsel_insn, INSN_A_LSB + 12 * gk);
    end
endgenerate

// one write port per lane: the single-cycle results in the decode cycle of a fast bundle, or the
// bundle's results at its commit (never both in one cycle)
always_comb begin
    for (int l = 0; l < LANES; l++) begin
        if (state_reg == ST_DECODE) begin
            rf_wr_en[l] = fast && is_alu(fld_op(prog_q[l]));
            rf_wr_addr[l] = fld_reg(prog_q[l], INSN_DST_LSB);
            rf_wr_data[l] = {alu_c_null[l], alu_c_value[l]};
        end else begin
            rf_wr_en[l] = commit_now && fin_we[l];
            rf_wr_addr[l] = fld_reg(bundle_reg[l], INSN_DST_LSB);
            rf_wr_data[l] = {fin_null[l], fin_val[l]};
        end
    end
end

assign rf_c_we = cfg_wr && cfg_region == 4'h3 && 32'(cfg_index[27:1]) + REG_CONST_BASE < REGS;
assign rf_c_addr = CL_REGS'(32'(cfg_index[27:1]) + REG_CONST_BASE);

rgw_doe_regs #(
    .REGS(REGS),
    .LANES(LANES),
    .RD_PORTS(RD_PORTS),
    .IN_WORDS(IN_WORDS)
) regs_inst (
    .clk(clk),
    .rst(rst),
    .rd_addr(rf_rd_addr),
    .rd_data(rf_rd_data),
    .wr_en(rf_wr_en),
    .wr_addr(rf_wr_addr),
    .wr_data(rf_wr_data),
    .c_we_value(rf_c_we && !cfg_index[0]),
    .c_we_null(rf_c_we && cfg_index[0]),
    .c_addr(rf_c_addr),
    .c_data(s_cfg_data),
    .clear(start_sec),
    .in_data(in_data_reg),
    .in_null(in_null_reg)
);

// ---------------------------------------------------------------- load port reads

logic         m_cfg_rd_valid_reg;
logic [63:0]  m_cfg_rd_data_reg;
logic         cfg_rd_half_reg;

assign m_cfg_rd_valid = m_cfg_rd_valid_reg;
assign m_cfg_rd_data = m_cfg_rd_data_reg;

// ---------------------------------------------------------------- decision

// The decision register: written when the decision is known (the end of the NEW section for a
// NEW, before its ACCEPT section runs; the end of the section for any other event) and held until
// m_dec takes it.  The next event waits for it to be taken, so tag_reg holds its tag.
logic             m_dec_valid_reg;
logic             m_dec_accept_reg;
logic [RULES-1:0] m_dec_failed_reg;

assign s_evt.ready = state_reg == ST_IDLE && !s_cfg_valid && !table_busy && !m_cfg_rd_valid_reg
    && !m_dec_valid_reg;
assign m_dec.valid = m_dec_valid_reg;
assign m_dec.tag = tag_reg;
assign m_dec.accept = m_dec_accept_reg;
assign m_dec.failed = m_dec_failed_reg;

logic [CL_SECTIONS-1:0] evt_sec;
always_comb begin
    // section 7 is never loaded: an unknown event kind or table runs nothing
    if (s_evt.kind == EVENT_LOAD) begin
        evt_sec = 32'(s_evt.table_id) < TABLES ? CL_SECTIONS'(8 + 32'(s_evt.table_id)) : CL_SECTIONS'(7);
    end else if (s_evt.kind <= EVENT_CANCEL) begin
        evt_sec = CL_SECTIONS'(s_evt.kind);
    end else begin
        evt_sec = CL_SECTIONS'(7);
    end
end

// ---------------------------------------------------------------- sequencer

logic                   start_sec;  // a section starts: pc and length from the section table
logic [CL_SECTIONS-1:0] start_idx;
logic                   evt_accept;

assign evt_accept = !(s_cfg_valid && s_cfg_ready) && s_evt.valid && s_evt.ready;

always_comb begin
    pc_next = pc_reg;
    start_sec = 1'b0;
    start_idx = evt_sec;
    case (state_reg)
        ST_IDLE: start_sec = evt_accept;
        ST_DECODE: if (fast) pc_next = pc_reg + 1'b1;
        ST_SEC_END: begin
            start_sec = phase_new_reg && failed_reg == 0;
            start_idx = CL_SECTIONS'(EVENT_ACCEPT);
        end
        default: begin
        end
    endcase
    if (commit_now) begin
        pc_next = pc_reg + 1'b1;
    end
    if (start_sec) begin
        pc_next = CL_PROG'(sec_start_reg[start_idx]);
    end
end

always_ff @(posedge clk) begin
    m_cfg_rd_valid_reg <= 1'b0;
    cycles_reg <= cycles_reg + 1;
    pc_reg <= pc_next;
    if (m_dec.ready) begin
        m_dec_valid_reg <= 1'b0;
    end

    if (start_sec) begin
        // fresh registers (rgw_doe_regs' clear): inputs from in_data_reg, loaded at this edge
        // when the event is accepted now, constants, every other register NULL
        remain_reg <= sec_len_reg[start_idx];
        state_reg <= sec_len_reg[start_idx] == 0 ? ST_SEC_END : ST_DECODE;
    end

    for (int l = 0; l < LANES; l++) begin
        if (alu_m_valid[l]) begin
            res_val_reg[l] <= alu_m_value[l];
            res_null_reg[l] <= alu_m_null[l];
            res_we_reg[l] <= 1'b1;
            alu_pending_reg[l] <= 1'b0;
        end
    end

    case (state_reg)
        ST_IDLE: begin
            if (s_cfg_valid && s_cfg_ready) begin
                if (s_cfg_write) begin
                    case (cfg_region)
                        4'h2: begin
                            if (32'(cfg_index) < SECTIONS) begin
                                sec_start_reg[CL_SECTIONS'(cfg_index)] <= s_cfg_data[31:0];
                                sec_len_reg[CL_SECTIONS'(cfg_index)] <= s_cfg_data[63:32];
                            end
                        end
                        4'h3: begin
                            // the constant pool is written by rgw_doe_regs' load port
                        end
                        default: begin
                        end
                    endcase
                end else begin
                    if (cfg_region == 4'h6 || cfg_region == 4'h7) begin
                        cfg_rd_half_reg <= cfg_region == 4'h6 && cfg_index[0];
                        state_reg <= ST_CFG_RD;
                    end else begin
                        m_cfg_rd_valid_reg <= 1'b1;
                        m_cfg_rd_data_reg <= '0;
                        if (cfg_region == 4'h0) begin
                            case (cfg_index)
                                28'd0: m_cfg_rd_data_reg <= {32'h52475744, 16'h0, 16'(ABI_VERSION)};
                                28'd1: m_cfg_rd_data_reg <= {16'(RULES), 16'(CL_ROWS), 8'(TABLES), 8'(COLS), 8'(LANES), 8'h0};
                                28'd2: m_cfg_rd_data_reg <= {61'd0, err_table_full, err_index_full, table_busy};
                                28'd4: m_cfg_rd_data_reg <= 64'(last_cycles_reg);
                                default: begin
                                end
                            endcase
                        end
                    end
                end
            end else if (s_evt.valid && s_evt.ready) begin
                tag_reg <= s_evt.tag;
                kind_reg <= s_evt.kind;
                in_data_reg <= s_evt.data;
                in_null_reg <= s_evt.nulls;
                failed_reg <= '0;
                phase_new_reg <= s_evt.kind == EVENT_NEW;
                cycles_reg <= 1;
            end
        end
        ST_CFG_RD: begin
            if (t_rsp_valid) begin
                m_cfg_rd_valid_reg <= 1'b1;
                m_cfg_rd_data_reg <= cfg_rd_half_reg ? 64'(t_rsp_null) : t_rsp_value;
                state_reg <= ST_IDLE;
            end
        end
        ST_DECODE: begin
            if (fast) begin
                // single-cycle ALU ops and rules: commit now (register writes: rf_wr_*)
                failed_reg <= failed_reg | rule_fail;
                remain_reg <= remain_reg - 1;
                if (remain_reg == 1) begin
                    state_reg <= ST_SEC_END;
                end
            end else begin
                state_reg <= has_table_op ? ST_TABLE : ST_ALU;
            end
            for (int l = 0; l < LANES; l++) begin
                bundle_reg[l] <= prog_q[l];
            end
            res_we_reg <= '0;
            alu_pending_reg <= alu_issue;
            rule_fail_reg <= rule_fail;
            tl_reg <= '0;
            tpass_reg <= !has_tread;
            tq_head_reg <= '0;
            tq_tail_reg <= '0;
        end
        ST_TABLE: begin
            // the table phase and the commit follow the case
        end
        ST_ALU: begin
            // waits for the ALU lanes; the commit follows the case
        end
        ST_SEC_END: begin
            // the decision leaves now, except after an ACCEPT section (its NEW's decision left
            // when the NEW section ended)
            if (kind_reg != EVENT_NEW || phase_new_reg) begin
                m_dec_valid_reg <= 1'b1;
                m_dec_accept_reg <= kind_reg != EVENT_NEW || failed_reg == 0;
                m_dec_failed_reg <= failed_reg;
                last_cycles_reg <= cycles_reg;
            end
            if (start_sec) begin
                phase_new_reg <= 1'b0;
            end else begin
                state_reg <= ST_IDLE;
            end
        end
        default: state_reg <= ST_IDLE;
    endcase

    // table phase: issue (from the decode cycle on), answers, end of the passes
    if (t_active) begin
        if (tsel_found) begin
            if (t_issue) begin
                tq_reg[cur_tail[CL_LANES-1:0]] <= tsel_lane;
                tq_tail_reg <= cur_tail + 1'b1;
                tl_reg <= (CL_LANES + 1)'(tsel_lane) + 1'b1;
            end else if (!t_cmd_valid) begin
                // skipped write; a skipped ALLOC still gives its dst a NULL handle
                if (tsel_op == OP_ALLOC) begin
                    res_val_reg[tsel_lane] <= '0;
                    res_null_reg[tsel_lane] <= 1'b1;
                    res_we_reg[tsel_lane] <= 1'b1;
                end
                tl_reg <= (CL_LANES + 1)'(tsel_lane) + 1'b1;
            end
        end
        if (state_reg == ST_TABLE) begin
            if (t_rsp_valid) begin
                if (fld_op(bundle_reg[tq_lane]) != OP_WRITE) begin
                    res_val_reg[tq_lane] <= t_rsp_value;
                    res_null_reg[tq_lane] <= t_rsp_null;
                    res_we_reg[tq_lane] <= 1'b1;
                end
                tq_head_reg <= tq_head_reg + 1'b1;
            end
            if (t_pass_done) begin
                if (!tpass_reg && b_has_twrite) begin
                    tpass_reg <= 1'b1;
                    tl_reg <= '0;
                end else begin
                    state_reg <= ST_ALU;
                end
            end
        end
    end

    // commit: results of the lanes, the answers arriving now included
    if (commit_now) begin
        // register writes: rf_wr_*
        failed_reg <= failed_reg | rule_fail_reg;
        remain_reg <= remain_reg - 1;
        state_reg <= remain_reg == 1 ? ST_SEC_END : ST_DECODE;
    end

    if (rst) begin
        state_reg <= ST_IDLE;
        m_dec_valid_reg <= 1'b0;
        m_cfg_rd_valid_reg <= 1'b0;
        alu_pending_reg <= '0;
        last_cycles_reg <= '0;
        for (int s = 0; s < SECTIONS; s++) begin
            sec_len_reg[s] <= '0;
            sec_start_reg[s] <= '0;
        end
    end
end

endmodule

`resetall
