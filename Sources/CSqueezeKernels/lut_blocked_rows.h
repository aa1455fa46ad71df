// Include template (no include guard): rows [r0, r1) for m tokens by row blocks x token blocks
// (SQ_RB x SQ_TB, so that a block of rows stays in cache while a block of tokens passes over it),
// each row for BR_NT tokens at a time, then the rest with a constant count. The includer defines
//   BR_NAME, BR_ATTR     the function and its target attribute;
//   BR_PARAMS            its parameter list, which has int64_t m, r0 and r1;
//   BR_NT                4 or 8;
//   BR_ROW_START(r, tb)  a statement run for row r before the first call of token block tb (may be empty);
//   BR_ROW(r, t, nt)     the row kernel for row r and tokens [t, t + nt), nt a constant,
// and this file undefines them at its end.
BR_ATTR static void BR_NAME(BR_PARAMS) {
    for (int64_t rb0 = r0; rb0 < r1; rb0 += SQ_RB) {
        int64_t rb1 = r1 - rb0 < SQ_RB ? r1 : rb0 + SQ_RB;
        for (int64_t tb = 0; tb < m; tb += SQ_TB) {
            int64_t te = m - tb < SQ_TB ? m : tb + SQ_TB;
            for (int64_t r = rb0; r < rb1; r++) {
                BR_ROW_START(r, tb);
                int64_t t = tb;
                for (; t + BR_NT <= te; t += BR_NT) BR_ROW(r, t, BR_NT);
                switch (te - t) {
#if BR_NT > 4
                case 7: BR_ROW(r, t, 7); break;
                case 6: BR_ROW(r, t, 6); break;
                case 5: BR_ROW(r, t, 5); break;
                case 4: BR_ROW(r, t, 4); break;
#endif
                case 3: BR_ROW(r, t, 3); break;
                case 2: BR_ROW(r, t, 2); break;
                case 1: BR_ROW(r, t, 1); break;
                default: break;
                }
            }
        }
    }
}

#undef BR_NAME
#undef BR_ATTR
#undef BR_PARAMS
#undef BR_NT
#undef BR_ROW_START
#undef BR_ROW
