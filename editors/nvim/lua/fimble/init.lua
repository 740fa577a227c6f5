-- fimble for Neovim: a thin client of `fimble serve`.
--
-- All completion logic (context, prompts, caching, postprocessing) lives in the server; this file
-- starts it with vim.lsp.start, asks for inline completions as you type, shows them as ghost
-- text with extmarks, and inserts what you accept.

local M = {}

---@class fimble.Options
M.defaults = {
  -- The server command: `fimble serve` from PATH.
  cmd = { "fimble", "serve" },
  -- Or connect to a running `fimble serve --tcp HOST:PORT` instead, e.g. "127.0.0.1:7777"; its token
  -- is read from token_file (default: $FIMBLE_HOME/serve.token, else ~/.cache/fimble/serve.token).
  tcp = nil,
  token_file = nil,
  -- Filetypes that get inline completions.
  filetypes = { "python", "javascript", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp",
    "cs", "ruby", "php", "lua", "sh" },
  -- Server options (initializationOptions), e.g. { model = "/path/model.gguf", maxTokens = 64 }.
  server = {},
  -- Ask for a completion this long after the last keystroke (a newer request cancels the one in flight).
  debounce_ms = 50,
  -- Insert-mode keys; set one to false to leave it unmapped.
  keys = {
    accept = "<Tab>",
    accept_line = "<C-j>",
    accept_word = "<C-l>",
    dismiss = "<C-]>",
  },
  -- Highlight group of the ghost text.
  hl_group = "Comment",
}

local ns = vim.api.nvim_create_namespace("fimble")
local state = {
  opts = nil, ---@type fimble.Options?
  timer = nil, ---@type uv.uv_timer_t?
  request = nil, ---@type { client: vim.lsp.Client, id: integer }?
  suggestion = nil, ---@type { bufnr: integer, row: integer, col: integer, text: string }?
  explain_token = nil,
  explain_buf = nil,
}
M._state = state

local function client_for(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = "fimble" })[1]
end

--- Remove the ghost text and forget the suggestion.
function M.dismiss()
  if state.suggestion and vim.api.nvim_buf_is_valid(state.suggestion.bufnr) then
    vim.api.nvim_buf_clear_namespace(state.suggestion.bufnr, ns, 0, -1)
  end
  state.suggestion = nil
end

local function cancel_request()
  if state.request then
    pcall(function()
      state.request.client:cancel_request(state.request.id)
    end)
    state.request = nil
  end
end

local function show(bufnr, row, col, text, command)
  M.dismiss()
  if text == "" then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], state.opts.hl_group } }
  end
  vim.api.nvim_buf_set_extmark(bufnr, ns, row, col, {
    virt_text = { { lines[1], state.opts.hl_group } },
    virt_text_pos = "inline",
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = "combine",
  })
  state.suggestion = { bufnr = bufnr, row = row, col = col, text = text, command = command }
end

--- Ask the server for an inline completion at the cursor (cancels the one in flight).
function M.request()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    return
  end
  cancel_request()
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 2 }
  local ok, id = client:request("textDocument/inlineCompletion", params, function(err, result)
    state.request = nil
    if err or not result then
      return
    end
    local items = result.items or result
    state.last_result = items
    local now = vim.api.nvim_win_get_cursor(0)
    if vim.api.nvim_get_current_buf() ~= bufnr or now[1] - 1 ~= row or now[2] ~= col then
      return -- the cursor moved on while we waited
    end
    if vim.fn.mode() ~= "i" then
      return
    end
    show(bufnr, row, col, items[1] and items[1].insertText or "", items[1] and items[1].command)
  end, bufnr)
  if ok then
    state.request = { client = client, id = id }
  end
end

--- fimble/completionReady: the rest of the answer shown early is decoded. Ask again while that
--- answer is still shown where the cursor is; the server answers from its cache with the whole.
local function on_completion_ready(_, result)
  local s = state.suggestion
  local bufnr = vim.api.nvim_get_current_buf()
  if not s or s.bufnr ~= bufnr or vim.fn.mode() ~= "i" or not result or vim.uri_from_bufnr(bufnr) ~= result.uri then
    return
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  if cursor[1] - 1 == s.row and cursor[2] == s.col then
    M.request()
  end
end

local function schedule_request()
  M.dismiss()
  if not state.timer then
    state.timer = vim.uv.new_timer()
  end
  state.timer:stop()
  state.timer:start(state.opts.debounce_ms, 0, vim.schedule_wrap(M.request))
end

--- Tell the server how much of the suggestion was accepted (its item's command, with the length
--- in characters appended): it counts acceptances per language, on this machine only.
local function report_accept(s, text)
  local cmd = s.command
  local client = cmd and client_for(s.bufnr)
  if not client or type(cmd.command) ~= "string" then
    return
  end
  local args = vim.deepcopy(cmd.arguments or {})
  args[#args + 1] = vim.fn.strchars(text)
  client:request("workspace/executeCommand", { command = cmd.command, arguments = args }, function() end, s.bufnr)
end

--- Insert `text` at the suggestion's place and move the cursor after it.
local function insert(text)
  local s = state.suggestion
  if not s or text == "" then
    return false
  end
  report_accept(s, text)
  local lines = vim.split(text, "\n", { plain = true })
  M.dismiss()
  vim.api.nvim_buf_set_text(s.bufnr, s.row, s.col, s.row, s.col, lines)
  local last_row = s.row + #lines - 1
  local last_col = (#lines == 1 and s.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { last_row + 1, last_col })
  return true
end

--- Accept the whole suggestion. Returns false when there is none (so the key falls through).
function M.accept()
  return insert(state.suggestion and state.suggestion.text or "")
end

--- Accept up to the end of the suggestion's first line.
function M.accept_line()
  local s = state.suggestion
  if not s then
    return false
  end
  local first, rest = s.text:match("^([^\n]*)\n?(.*)$")
  if first == "" and rest ~= "" then
    first = "\n" .. rest:match("^([^\n]*)")
  end
  return insert(first)
end

--- Accept the next word of the suggestion.
function M.accept_word()
  local s = state.suggestion
  if not s then
    return false
  end
  local word = s.text:match("^%s*[%w_]+") or s.text:match("^%s*[^%s%w_]+") or s.text:match("^%s+")
  return insert(word or "")
end

local function on_progress(args)
  local params = args.data and args.data.params
  if not params or params.token ~= state.explain_token or not state.explain_buf then
    return
  end
  local value = params.value or {}
  if value.message and vim.api.nvim_buf_is_valid(state.explain_buf) then
    vim.api.nvim_buf_set_lines(state.explain_buf, 0, -1, false, vim.split(value.message, "\n", { plain = true }))
  end
end

local function open_float(lines, title)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].filetype = "markdown"
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  local width = math.min(90, vim.o.columns - 4)
  local height = math.min(25, vim.o.lines - 4)
  local win = vim.api.nvim_open_win(buf, false, {
    relative = "editor", row = 1, col = vim.o.columns - width - 2, width = width, height = height,
    style = "minimal", border = "rounded", title = title,
  })
  vim.wo[win].wrap = true
  return buf, win
end

--- Explain lines [first, last] (1-based); an empty range lets the server pick the function.
function M.explain(first, last)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    vim.notify("fimble: no server attached to this buffer", vim.log.levels.WARN)
    return
  end
  local buf = open_float({ "fimble: explaining…" }, " fimble explain ")
  state.explain_buf = buf
  state.explain_token = "fimble-explain-" .. tostring(vim.uv.hrtime())
  client:request("workspace/executeCommand", {
    command = "fimble.explain",
    workDoneToken = state.explain_token,
    arguments = { {
      uri = vim.uri_from_bufnr(bufnr),
      range = { start = { line = first - 1, character = 0 }, ["end"] = { line = last - 1, character = 0 } },
    } },
  }, function(err, result)
    if not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    local text = err and ("fimble: " .. (err.message or tostring(err))) or result or ""
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(text, "\n", { plain = true }))
  end, bufnr)
end

--- Show fimble/status (why a suggestion did or did not appear) in a floating window.
function M.status()
  local client = client_for(vim.api.nvim_get_current_buf())
  if not client then
    vim.notify("fimble: no server attached to this buffer", vim.log.levels.WARN)
    return
  end
  client:request("fimble/status", {}, function(err, result)
    local text = err and ("fimble: " .. err.message) or vim.inspect(result)
    open_float(vim.split(text, "\n", { plain = true }), " fimble status ")
  end)
end

local function map_key(lhs, fn)
  if not lhs then
    return
  end
  -- Not an <expr> mapping: those run under textlock and may not change the buffer.
  local keys = vim.api.nvim_replace_termcodes(lhs, true, false, true)
  vim.keymap.set("i", lhs, function()
    if state.suggestion and fn() then
      return
    end
    vim.api.nvim_feedkeys(keys, "n", false) -- no suggestion: the key does what it always does
  end, { silent = true, desc = "fimble" })
end

-- How to reach the server: start it (cmd), or connect over TCP with the token it wrote.
local function connection()
  local opts = state.opts
  if not opts.tcp then
    return opts.cmd, opts.server
  end
  local host, port = opts.tcp:match("^(.+):(%d+)$")
  local home = vim.env.FIMBLE_HOME or ((vim.env.XDG_CACHE_HOME or (vim.env.HOME .. "/.cache")) .. "/fimble")
  local path = opts.token_file or (home .. "/serve.token")
  local lines = vim.fn.filereadable(path) == 1 and vim.fn.readfile(path, "", 1) or {}
  if not lines[1] then
    vim.notify("fimble: no token in " .. path .. " (is `fimble serve --tcp` running?)", vim.log.levels.ERROR)
  end
  return vim.lsp.rpc.connect(host, tonumber(port)), vim.tbl_extend("force", opts.server, { token = lines[1] })
end

local function attach(bufnr)
  local cmd, init_options = connection()
  vim.lsp.start({
    name = "fimble",
    cmd = cmd,
    root_dir = vim.fs.root(bufnr, { ".git" }) or vim.fn.getcwd(),
    init_options = init_options,
    handlers = { ["fimble/completionReady"] = on_completion_ready },
  }, { bufnr = bufnr })
  local group = vim.api.nvim_create_augroup("fimble_buf_" .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd("TextChangedI", { group = group, buffer = bufnr, callback = schedule_request })
  vim.api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      local s = state.suggestion
      local cursor = vim.api.nvim_win_get_cursor(0)
      if s and (cursor[1] - 1 ~= s.row or cursor[2] ~= s.col) then
        M.dismiss()
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      cancel_request()
      M.dismiss()
    end,
  })
end

---@param opts fimble.Options?
function M.setup(opts)
  state.opts = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  local group = vim.api.nvim_create_augroup("fimble", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = state.opts.filetypes,
    callback = function(args)
      attach(args.buf)
    end,
  })
  vim.api.nvim_create_autocmd("LspProgress", { group = group, callback = on_progress })
  map_key(state.opts.keys.accept, M.accept)
  map_key(state.opts.keys.accept_line, M.accept_line)
  map_key(state.opts.keys.accept_word, M.accept_word)
  if state.opts.keys.dismiss then
    vim.keymap.set("i", state.opts.keys.dismiss, M.dismiss, { desc = "fimble: dismiss" })
  end
  vim.api.nvim_create_user_command("FimbleExplain", function(cmd)
    M.explain(cmd.line1, cmd.line2)
  end, { range = true, desc = "fimble: explain the function under the cursor or the selection" })
  vim.api.nvim_create_user_command("FimbleStatus", M.status, { desc = "fimble: server status" })
  -- Buffers already open when setup runs.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(state.opts.filetypes, vim.bo[bufnr].filetype) then
      attach(bufnr)
    end
  end
end

return M
