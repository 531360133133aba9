#!/usr/bin/env node
// Checks luci-app-rupnpd without a browser or a router:
//   - every view file compiles the way LuCI's loader compiles it (the file is the body of a
//     function whose parameters are the modules named by its leading 'require …' lines) and
//     evaluates to a class definition with the methods LuCI calls;
//   - every JSON file of the packages parses; the menu entry points at an existing view and the
//     rpcd ACL grants every ubus method the views declare;
//   - the settings page offers every option of /etc/config/upnpd, and renders a `list` reply into
//     the mappings and pinhole tables (host names from getHostHints, times, origins), and its
//     Delete button calls `rupnpd delete` with the mapping's protocol and external port;
//   - the status overview box renders mappings, and nothing when the daemon is not running;
//   - hostile text (a DHCP host name, a description from a LAN client, device names) is never
//     inserted as HTML;
//   - a refused delete or switch shows the reason in words, though rpc.js drops the reply data;
//   - Start/Stop/Restart go through `luci setInitAction`;
//   - the rpcd ACL grants exactly what the pages (and the LuCI widgets they use) call.
// LuCI's modules are replaced by small recording stand-ins that follow what the real ones do:
//   - E() and dom: a child given alone (not in an array) that is not a node is set as innerHTML,
//     a string inside an array becomes a text node (LuCI's dom.append); cbi_update_table inserts
//     each cell that way too;
//   - rpc.declare: the reply uhttpd's /ubus endpoint gives rpc.js is [status, data?] (the
//     legacy JSON-RPC form), or a JSON-RPC error before the call reaches the object: -32002
//     "Access denied" when the session's ACL lacks the method, -32000 "Object not found" when
//     the object is not registered (the daemon not running). rpc.js rejects a JSON-RPC error
//     always, and a non-zero status when the declaration says `reject: true`, with the text
//     "RPC call to OBJECT/METHOD failed with ubus code N: NAME", dropping the data; otherwise it
//     resolves with the data (or the bare status) filtered by `expect`;
//   - the session: root has everything; another user only what its ACL groups grant (`ubus`:
//     object -> methods, `uci`: packages for read and for write), as rpcd checks it.
// Exits non-zero on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const root = path.resolve(__dirname, '../..');
const pkgDir = path.join(root, 'openwrt-pkg');
const appDir = path.join(pkgDir, 'luci-app-rupnpd');
const viewDir = path.join(appDir, 'htdocs/luci-static/resources/view');

let passed = 0, failed = 0;
function ok(name) { console.log('ok   ' + name); passed++; }
function bad(name, detail) { console.log('FAIL ' + name + (detail ? ': ' + detail : '')); failed++; }
function check(name, cond, detail) { cond ? ok(name) : bad(name, detail); }

function walk(dir, pred, out = []) {
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) walk(p, pred, out);
		else if (pred(p)) out.push(p);
	}
	return out;
}

// --- LuCI stand-ins ----------------------------------------------------------------------------

// String.prototype.format as LuCI defines it, for the conversions the views use.
function format(fmt, ...args) {
	return fmt.replace(/%(\d+)?(?:\.(\d+))?([sdhtm%])/g, (all, width, prec, conv) => {
		if (conv == '%') return '%';
		const v = args.shift();
		switch (conv) {
		case 's': return String(v);
		case 'd': return String(Math.floor(+v || 0));
		case 'h': return String(v).replace(/[&<>"']/g, c => '&#' + c.charCodeAt(0) + ';');
		case 't': {
			let s = +v || 0, out = '';
			for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60]])
				if (s >= n) { out += Math.floor(s / n) + u + ' '; s %= n; }
			return out + s + 's';
		}
		case 'm': {
			const base = +width || 1000, units = ['', 'K', 'M', 'G', 'T'];
			let x = +v || 0, i = 0;
			while (x >= base && i < units.length - 1) { x /= base; i++; }
			return (i ? x.toFixed(+prec || 2) : String(x)) + ' ' + units[i] + (i && base == 1024 ? 'i' : '');
		}
		}
	});
}

// rpc.js's names of the ubus statuses (getStatusText).
const STATUS_TEXT = ['Command OK', 'Invalid command', 'Invalid argument', 'Method not found',
	'Resource not found', 'No data received', 'Permission denied', 'Request timeout',
	'Not supported', 'Unspecified error', 'Connection lost'];

// What the LuCI widgets the settings page uses call themselves (network.js, firewall.js), as seen
// with OpenWrt's real uhttpd, rpcd and LuCI for a user holding only the app's ACL group: the
// network and zone selectors need these, and the uci packages they read.
const LIBRARY_NEEDS = {
	NetworkSelect: {
		ubus: [['luci-rpc', 'getNetworkDevices'], ['luci-rpc', 'getBoardJSON'], ['network.interface', 'dump']],
		uci: ['network']
	},
	ZoneSelect: {
		ubus: [['luci-rpc', 'getNetworkDevices'], ['luci-rpc', 'getBoardJSON'], ['network.interface', 'dump']],
		uci: ['firewall', 'network']
	}
};

// rpcd's ACL check for a session: null = root (everything).
function aclGrants(acl, scope, obj, method) {
	if (acl == null) return true;
	return ['read', 'write'].some(level => {
		const g = (acl[level] || {})[scope];
		if (scope == 'ubus') return g && Array.isArray(g[obj]) && (g[obj].includes(method) || g[obj].includes('*'));
		return Array.isArray(g) && (g.includes(obj) || g.includes('*'));
	});
}

function makeEnv(replies, uciData, session) {
	const log = { calls: [], tables: [], polls: [], notes: [], uciSet: [], html: [], denied: [],
		declared: [], uciUsed: [] };

	// LuCI's dom.append: a lone non-node child is innerHTML, array items are text nodes.
	const isNode = x => x != null && typeof x == 'object' && !Array.isArray(x) && 'tag' in x;
	const asHtml = x => {
		if (x != null && typeof x != 'object' && typeof x != 'function') log.html.push(String(x));
	};
	const E = (tag, attrs, children) => {
		if (Array.isArray(attrs) || typeof attrs != 'object' || attrs == null || isNode(attrs)) {
			children = attrs;
			attrs = {};
		}
		if (!Array.isArray(children)) asHtml(children);
		const kids = children == null ? [] : (Array.isArray(children) ? children : [children]);
		return { tag, attrs, children: kids };
	};

	class Option {
		constructor(cls, name, args) {
			Object.assign(this, { cls, name, args, deps: [], values: [] });
		}
		depends(k, v) { this.deps.push([k, v]); }
		value(k, v) { this.values.push([k, v]); }
	}
	class Section {
		constructor(cls, args) {
			Object.assign(this, { cls, args, tabs: [], options: [] });
		}
		tab(name, title) { this.tabs.push(name); }
		taboption(tab, cls, name, ...args) {
			const o = new Option(cls, name, args);
			// A LuCI widget loads what it lists through network.js / firewall.js.
			const needs = LIBRARY_NEEDS[cls && cls.name];
			if (needs) {
				for (const [obj, method] of needs.ubus)
					pending.push(rpcCall({ object: obj, method, library: true }).catch(() => null));
				for (const pkg of needs.uci) modules.uci.load(pkg, true);
			}
			o.tab = tab;
			if (cls == form.SectionValue) o.subsection = new Section(args[0], args.slice(1));
			this.options.push(o);
			return o;
		}
		option(cls, name, ...args) { return this.taboption(null, cls, name, ...args); }
	}
	const token = name => ({ name });
	const pending = [];
	const form = {
		Map: class {
			constructor(config, title, descr) {
				Object.assign(this, { config, title, descr, sections: [] });
				// A form reads its package and saves it.
				log.uciUsed.push(['read', config], ['write', config]);
			}
			section(cls, ...args) {
				const s = new Section(cls, args);
				this.sections.push(s);
				return s;
			}
			render() {
				return Promise.all(pending).then(() => ({ tag: 'cbi-map', map: this, children: [] }));
			}
		},
		NamedSection: token('NamedSection'), GridSection: token('GridSection'),
		TypedSection: token('TypedSection'), SectionValue: token('SectionValue'),
		Flag: token('Flag'), Value: token('Value'), ListValue: token('ListValue'),
		DynamicList: token('DynamicList'), DummyValue: token('DummyValue')
	};

	const modules = {
		view: { extend: def => def },
		baseclass: { extend: def => def },
		form,
		rpc: {
			declare: opts => {
				log.declared.push([opts.object, opts.method]);
				return (...args) => {
					const params = {};
					(opts.params || []).forEach((p, i) => { if (args[i] !== undefined) params[p] = args[i]; });
					return rpcCall(opts, params);
				};
			}
		},
		uci: {
			load: (pkg, library) => {
				log.uciUsed.push(['read', pkg, library]);
				if (!aclGrants(session, 'uci', pkg)) log.denied.push('uci ' + pkg);
				return Promise.resolve();
			},
			unload: () => {},
			get: (conf, sid, opt) => {
				log.uciUsed.push(['read', conf]);
				return opt == null ? uciData[sid] : (uciData[sid] || {})[opt];
			},
			set: (...args) => {
				log.uciUsed.push(['write', args[0]]);
				log.uciSet.push(args);
			}
		},
		ui: {
			createHandlerFn: (ctx, fn, ...args) => (...rest) =>
				(typeof fn == 'string' ? ctx[fn] : fn).apply(ctx, args.concat(rest)),
			addNotification: (title, node, cls) => log.notes.push([cls, node])
		},
		dom: {
			content: (node, content) => {
				if (!Array.isArray(content)) asHtml(content);
				node.children = Array.isArray(content) ? content : [content];
			},
			parent: () => null
		},
		poll: { add: (fn, interval) => log.polls.push([fn, interval]) },
		widgets: { NetworkSelect: token('NetworkSelect'), ZoneSelect: token('ZoneSelect') }
	};

	// uhttpd's /ubus endpoint and rpc.js, for one call.
	function rpcCall(opts, params) {
		const name = opts.object + '/' + opts.method;
		log.calls.push([name, params || {}, !!opts.library]);
		return new Promise((resolve, reject) => {
			const fail = text => reject(new Error('RPC call to ' + name + ' failed with ' + text));
			if (!aclGrants(session, 'ubus', opts.object, opts.method)) {
				log.denied.push(name);
				return fail('error -32002: Access denied');
			}
			let r = replies[name];
			if (typeof r == 'function') r = r(params);
			if (r != null && r.rpcError) return fail('error ' + r.rpcError + ': ' + r.message);
			const result = (r != null && r.ubus !== undefined)
				? (r.data !== undefined ? [r.ubus, r.data] : [r.ubus])
				: (r === undefined ? [0] : [0, r]);
			if (opts.reject && result[0] !== 0)
				return fail('ubus code ' + result[0] + ': ' + (STATUS_TEXT[result[0]] || 'Unknown error code'));
			let ret = JSON.parse(JSON.stringify(result.length > 1 ? result[1] : result[0]));
			if (opts.expect) {
				const type = x => Object.prototype.toString.call(x);
				const key = Object.keys(opts.expect)[0];
				if (ret != null && key != '') ret = ret[key];
				if (ret == null || type(ret) != type(opts.expect[key])) ret = opts.expect[key];
			}
			resolve(ret);
		});
	}

	const L = {
		toArray: x => x == null ? [] : Array.isArray(x) ? x : String(x).trim().split(/\s+/).filter(Boolean),
		resolveDefault: (p, d) => Promise.resolve(p).catch(() => d),
		bind: (fn, ctx, ...args) => fn.bind(ctx, ...args)
	};
	const globals = {
		L, E,
		_: s => s,
		N_: (n, s, p) => (n == 1 ? s : p),
		// ui.Table.update: each cell is the lone child of its <td>.
		cbi_update_table: (table, rows, placeholder) => {
			for (const row of rows) for (const cell of row) if (!Array.isArray(cell)) asHtml(cell);
			log.tables.push({ table, rows, placeholder });
		}
	};

	return { modules, globals, log, form };
}

// The loader: the leading 'require x [as y]'; directives become the function's parameters.
function compile(file) {
	const source = fs.readFileSync(file, 'utf8');
	const requires = [];
	const re = /^\s*'require\s+([\w.]+)(?:\s+as\s+(\w+))?';/gm;
	let m;
	while ((m = re.exec(source)) !== null) requires.push(m[2] || m[1].split('.').pop());
	const params = ['L', 'E', '_', 'N_', 'cbi_update_table'].concat(requires);
	const script = new vm.Script('(function(' + params.join(', ') + ') {\n' + source + '\n})',
		{ filename: file, lineOffset: -1 });
	return { script, requires, params };
}

function instantiate(file, env) {
	const { script, params } = compile(file);
	String.prototype.format = function(...args) { return format(String(this), ...args); };
	const fn = script.runInThisContext();
	return fn(...params.map(p => (p in env.globals) ? env.globals[p] : env.modules[p]));
}

// Depth-first search in the E() tree.
function findAll(node, pred, out = []) {
	if (node && typeof node == 'object') {
		if (pred(node)) out.push(node);
		for (const c of node.children || []) findAll(c, pred, out);
	}
	return out;
}
function text(node) {
	if (node == null) return '';
	if (typeof node != 'object') return String(node);
	return (node.children || []).map(text).join('');
}

// --- fixtures ------------------------------------------------------------------------------------

const replies = {
	'rupnpd/status': {
		enabled: true, enable_upnp: true, enable_natpmp: true, enable_pcp: false, secure_mode: true,
		log_packets: false, log_connections: false, external_ip: '203.0.113.7',
		external_ip_private: false, wan_device: 'wan', lan_devices: ['br-lan'], firewall: 'fw4', uptime: 3725,
		mappings: { total: 2, tcp: 1, udp: 1, upnp: 1, natpmp: 0, pcp: 1, pinholes: 1 },
		version: '0.1.0'
	},
	'rupnpd/list': {
		mappings: [
			{ proto: 'TCP', external_port: 8080, internal_ip: '192.168.1.10', internal_port: 80,
			  remote_host: '', description: 'web <server>', origin: 'upnp-igdv2', client: '192.168.1.10',
			  expires: 3600, packets: 12, bytes: 2048 },
			{ proto: 'UDP', external_port: 3478, internal_ip: '192.168.1.11', internal_port: 3478,
			  remote_host: '198.51.100.9', description: 'PCP', origin: 'pcp', client: '192.168.1.11',
			  expires: 0, packets: 0, bytes: 0 }
		],
		pinholes: [
			{ id: 1, proto: 'TCP', remote_host: '2001:db8::1', remote_port: 0, internal_ip: '2001:db8:1::10',
			  internal_port: 22, origin: 'upnp-igdv2', peer: false, expires: 60, packets: 1, bytes: 60 },
			{ id: 2, proto: 17, remote_host: '2001:db8::9', remote_port: 3478, internal_ip: '2001:db8:1::10',
			  internal_port: 5000, origin: 'pcp', peer: true, expires: 600, packets: 0, bytes: 0 }
		]
	},
	'luci-rpc/getHostHints': {
		'00:11:22:33:44:55': { name: 'nas', ipaddrs: ['192.168.1.10'], ip6addrs: ['2001:db8:1::10'] }
	}
};
const uciData = { config: { '.type': 'upnpd', enabled: '1', internal_iface: 'lan guest' } };

// Everything /etc/config/upnpd may hold (openwrt.md §1.1 plus rupnpd's options).
const UPNPD_OPTIONS = `enabled enable_upnp enable_natpmp secure_mode log_output download upload
	external_iface external_iface6 external_zone external_ip internal_iface port upnp_lease_file
	upnp_lease_file6 igdv1 uuid notify_interval presentation_url serial_number model_number
	system_uptime use_stun stun_host stun_port stun_allow_filtered ipv6_disable ext_allow_private_ipv4
	enable_pcp log_packets log_connections hairpin max_mappings max_mappings_per_client
	absent_host_timeout min_lifetime max_lifetime upnp_max_lease pcp_allow_thirdparty max_subscribers
	max_subscribers_per_client ipv6_pinholes friendly_name nft_table nft_forward_chain
	nft_prerouting_chain nft_postrouting_chain`.split(/\s+/).filter(Boolean);
const PERM_RULE_OPTIONS = ['comment', 'int_addr', 'int_ports', 'ext_ports', 'action'];

// --- the ACL ---------------------------------------------------------------------------------------

// Methods that change something; rpcd gives the `read` and `write` lists the same power, but a
// read-only group must not be able to change anything.
const CHANGES = ['delete', 'flush', 'set', 'reload', 'setInitAction'];

// Every use of ubus and UCI by the app's views, found twice: by reading their sources
// (rpc.declare objects/methods, uci.* and form.Map packages, the widgets they use) and by
// running them with every button pressed. The two must agree.
async function collectUses() {
	const uses = new Set();
	const add = (scope, level, a, b) => uses.add(JSON.stringify([scope, level, a, b || null]));
	const level = method => CHANGES.includes(method) ? 'write' : 'read';
	const sources = walk(viewDir, p => p.endsWith('.js'));

	const stat = new Set();
	for (const f of sources) {
		const src = fs.readFileSync(f, 'utf8');
		for (const m of src.matchAll(/rpc\.declare\(\{\s*object:\s*'([^']+)',\s*method:\s*'([^']+)'/g))
			stat.add(JSON.stringify(['ubus', level(m[2]), m[1], m[2]]));
		for (const m of src.matchAll(/uci\.(load|get|set|unset|add|remove|save)\('([^']+)'/g))
			stat.add(JSON.stringify(['uci', ['load', 'get'].includes(m[1]) ? 'read' : 'write', m[2], null]));
		for (const m of src.matchAll(/new form\.Map\('([^']+)'/g)) {
			stat.add(JSON.stringify(['uci', 'read', m[1], null]));
			stat.add(JSON.stringify(['uci', 'write', m[1], null]));
		}
		for (const m of src.matchAll(/widgets\.(\w+)/g)) {
			const needs = LIBRARY_NEEDS[m[1]];
			if (!needs) { bad('ACL: unknown widget ' + m[1] + ' in ' + path.relative(root, f)); continue; }
			for (const [o, meth] of needs.ubus) stat.add(JSON.stringify(['ubus', 'read', o, meth]));
			for (const pkg of needs.uci) stat.add(JSON.stringify(['uci', 'read', pkg, null]));
		}
	}

	const dyn = new Set();
	for (const file of ['rupnpd/rupnpd.js', 'status/include/80_rupnpd.js']) {
		const env = makeEnv(Object.assign({}, replies, { 'luci/setInitAction': { result: true } }), uciData);
		const view = instantiate(path.join(viewDir, file), env);
		const node = await view.render(await view.load());
		// Every button, the table rows' Delete included (tables as first rendered: each click
		// renders them again).
		const buttons = findAll(node || {}, n => n.tag == 'button');
		for (const t of env.log.tables.slice()) for (const r of t.rows) for (const c of r)
			if (c && c.tag == 'button') buttons.push(c);
		for (const b of buttons) await b.attrs.click({ currentTarget: {} });
		for (const [obj, method] of env.log.declared) dyn.add(JSON.stringify(['ubus', level(method), obj, method]));
		for (const [name] of env.log.calls) {
			const [obj, method] = name.split('/');
			dyn.add(JSON.stringify(['ubus', level(method), obj, method]));
		}
		for (const [lvl, pkg] of env.log.uciUsed) dyn.add(JSON.stringify(['uci', lvl, pkg, null]));
	}
	const missing = [...dyn].filter(u => !stat.has(u)), unseen = [...stat].filter(u => !dyn.has(u));
	check('ACL: reading the sources finds every ubus/UCI use the running pages make', missing.length == 0, missing.join(' '));
	check('ACL: every use found in the sources is made by the running pages', unseen.length == 0, unseen.join(' '));
	for (const u of dyn) uses.add(u);
	return [...uses].map(u => JSON.parse(u));
}

async function aclChecks(acl) {
	const uses = await collectUses();
	const has = (lvl, scope, a, b) => {
		const g = (acl[lvl] || {})[scope];
		return scope == 'ubus' ? !!(g && (g[a] || []).includes(b)) : !!(g && g.includes(a));
	};
	for (const [scope, lvl, a, b] of uses)
		check('ACL grants ' + scope + ' ' + a + (b ? ' ' + b : '') + ' (' + lvl + ')', has(lvl, scope, a, b));
	// Nothing more: every grant is a use, at its level.
	const extra = [];
	for (const lvl of ['read', 'write']) {
		for (const [obj, methods] of Object.entries((acl[lvl] || {}).ubus || {}))
			for (const m of methods)
				if (!uses.some(u => u[0] == 'ubus' && u[1] == lvl && u[2] == obj && u[3] == m)) extra.push(lvl + ' ubus ' + obj + ' ' + m);
		for (const pkg of (acl[lvl] || {}).uci || [])
			if (!uses.some(u => u[0] == 'uci' && u[1] == lvl && u[2] == pkg)) extra.push(lvl + ' uci ' + pkg);
	}
	check('ACL grants nothing the pages do not use', extra.length == 0, extra.join(', '));
	const other = Object.keys(acl).filter(k => !['description', 'read', 'write'].includes(k));
	check('ACL has no other scopes (file, cgi-io, …)', other.length == 0, other.join(','));

	// A non-root user holding only this group: nothing the pages do is denied.
	for (const file of ['rupnpd/rupnpd.js', 'status/include/80_rupnpd.js']) {
		const env = makeEnv(Object.assign({}, replies, { 'luci/setInitAction': { result: true } }), uciData, acl);
		const view = instantiate(path.join(viewDir, file), env);
		const node = await view.render(await view.load());
		for (const b of findAll(node || {}, n => n.tag == 'button')) await b.attrs.click({ currentTarget: {} });
		check('non-root user with the app ACL: nothing denied (' + file + ')', env.log.denied.length == 0, env.log.denied.join(', '));
	}
	// ... and the check can fail: without luci-rpc getBoardJSON the network selector is denied.
	const less = JSON.parse(JSON.stringify(acl));
	less.read.ubus['luci-rpc'] = less.read.ubus['luci-rpc'].filter(m => m != 'getBoardJSON');
	const env = makeEnv(replies, uciData, less);
	const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
	await view.render(await view.load());
	check('an ACL without luci-rpc getBoardJSON is caught (the network selectors need it)',
		env.log.denied.includes('luci-rpc/getBoardJSON'), env.log.denied.join(', '));
}

// --- checks --------------------------------------------------------------------------------------

async function main() {
	// The browser's confirmation dialog (Flush asks first): always yes.
	globalThis.confirm = () => true;
	// JSON
	for (const f of walk(pkgDir, p => p.endsWith('.json'))) {
		try { JSON.parse(fs.readFileSync(f, 'utf8')); ok('JSON parses: ' + path.relative(root, f)); }
		catch (e) { bad('JSON parses: ' + path.relative(root, f), e.message); }
	}

	// Every view compiles as LuCI compiles it.
	const views = walk(viewDir, p => p.endsWith('.js'));
	for (const f of views) {
		try { compile(f); ok('compiles: ' + path.relative(root, f)); }
		catch (e) { bad('compiles: ' + path.relative(root, f), e.message); }
	}

	const acl = JSON.parse(fs.readFileSync(path.join(appDir, 'root/usr/share/rpcd/acl.d/luci-app-rupnpd.json'), 'utf8'))['luci-app-rupnpd'];
	const menu = JSON.parse(fs.readFileSync(path.join(appDir, 'root/usr/share/luci/menu.d/luci-app-rupnpd.json'), 'utf8'));

	for (const [p, entry] of Object.entries(menu)) {
		const file = path.join(viewDir, entry.action.path + '.js');
		check('menu ' + p + ' points at an existing view', fs.existsSync(file), file);
		check('menu ' + p + ' depends on the ACL and on /etc/config/upnpd',
			(entry.depends.acl || []).includes('luci-app-rupnpd') && entry.depends.uci && entry.depends.uci.upnpd === true);
	}
	check('ACL: uci upnpd readable and writable', acl.read.uci.includes('upnpd') && acl.write.uci.includes('upnpd'));

	// The settings page.
	{
		const env = makeEnv(replies, uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		check('rupnpd.js: view with load() and render()', typeof view.load == 'function' && typeof view.render == 'function');

		const data = await view.load();
		const node = await view.render(data);
		const map = findAll(node, n => n.tag == 'cbi-map')[0].map;
		check('form is over UCI package upnpd', map.config == 'upnpd');

		const main = map.sections.find(s => s.cls == env.form.NamedSection);
		check('settings: named section config of type upnpd', main && main.args[0] == 'config' && main.args[1] == 'upnpd');
		check('settings: tabs General, Advanced, Permission rules',
			JSON.stringify(main.tabs) == JSON.stringify(['general', 'advanced', 'rules']), main.tabs.join(','));
		const names = main.options.map(o => o.name);
		const missing = UPNPD_OPTIONS.filter(o => !names.includes(o));
		check('settings: every upnpd option is in the form', missing.length == 0, 'missing ' + missing.join(', '));

		const rules = main.options.find(o => o.cls == env.form.SectionValue);
		const grid = rules && rules.subsection;
		check('rules: a sortable, anonymous grid over perm_rule in the rules tab',
			rules && rules.tab == 'rules' && grid.cls == env.form.GridSection && grid.args[0] == 'perm_rule' &&
			grid.sortable === true && grid.anonymous === true && grid.addremove === true);
		const ruleNames = grid ? grid.options.map(o => o.name) : [];
		check('rules: every perm_rule option is a column',
			PERM_RULE_OPTIONS.every(o => ruleNames.includes(o)), ruleNames.join(','));

		const lan = main.options.find(o => o.name == 'internal_iface');
		check('internal_iface reads the space-separated option as a list',
			JSON.stringify(lan.cfgvalue('config')) == JSON.stringify(['lan', 'guest']));
		lan.write('config', ['lan', 'iot']);
		check('internal_iface writes one space-separated option (miniupnpd schema)',
			JSON.stringify(env.log.uciSet.pop()) == JSON.stringify(['upnpd', 'config', 'internal_iface', 'lan iot']));

		check('mappings are polled every 5 s', env.log.polls.length == 1 && env.log.polls[0][1] == 5);
		const [mapTable, pinTable] = env.log.tables;
		check('mappings table: one row per mapping', mapTable && mapTable.rows.length == 2);
		const r0 = mapTable.rows[0], r1 = mapTable.rows[1];
		check('mappings table: host name from getHostHints, unknown host otherwise',
			r0[0] == 'nas' && r1[0] == 'Unknown', r0[0] + ' / ' + r1[0]);
		check('mappings table: protocol, ports, addresses',
			r0[1] == 'TCP' && r0[2] == 8080 && r0[3] == '192.168.1.10:80' && r0[4] == 'any' && r1[4] == '198.51.100.9',
			JSON.stringify(r0.slice(1, 5)));
		check('mappings table: description HTML-escaped', r0[5] == 'web &#60;server&#62;', r0[5]);
		check('mappings table: origin labels', r0[6] == 'UPnP IGDv2' && r1[6] == 'PCP', r0[6] + ' / ' + r1[6]);
		check('mappings table: time left, permanent', r0[7] == '1h 0s' && r1[7] == 'Permanent', r0[7] + ' / ' + r1[7]);
		check('mappings table: traffic', r0[8] == '12 packets, 2.00 KiB', r0[8]);
		check('pinholes table: one row per pinhole, IPv6 address in brackets',
			pinTable && pinTable.rows.length == 2 && pinTable.rows[0][3] == '[2001:db8:1::10]:22' && pinTable.rows[0][1] == 'nas',
			pinTable && JSON.stringify(pinTable.rows[0]));
		check('pinholes table: WANIPv6FirewallControl and PCP pinholes with their origin',
			pinTable && pinTable.rows[0][5] == 'UPnP IGDv2' && pinTable.rows[1][5] == 'PCP PEER'
				&& pinTable.rows[1][4] == '[2001:db8::9]:3478',
			pinTable && JSON.stringify(pinTable.rows.map(r => r[5])));

		env.log.calls.length = 0;
		const del = r0[9];
		await del.attrs.click({ currentTarget: {} });
		const delCall = env.log.calls.find(c => c[0] == 'rupnpd/delete');
		check('Delete calls rupnpd delete {proto, external_port}',
			delCall && JSON.stringify(delCall[1]) == JSON.stringify({ proto: 'TCP', external_port: 8080 }),
			JSON.stringify(delCall));

		const statusText = text(node);
		check('status box shows the external address and counts',
			statusText.includes('203.0.113.7') && statusText.includes('2 (TCP 1, UDP 1; UPnP 1, NAT-PMP 0, PCP 1), 1 IPv6 pinholes'));
		const switchButtons = findAll(node, n => n.tag == 'button' && /^Switch (on|off)$/.test(text(n)));
		check('status box: one live switch per set parameter', switchButtons.length == 7, String(switchButtons.length));
		check('status box: the firewall in use, no warning while it is up',
			statusText.includes('firewall4') && !statusText.includes('The firewall is down'), statusText);
	}

	// fw4 stopped: both pages say that the firewall is down.
	{
		const down = JSON.parse(JSON.stringify(replies));
		down['rupnpd/status'].firewall = 'down';
		for (const file of ['rupnpd/rupnpd.js', 'status/include/80_rupnpd.js']) {
			const env = makeEnv(down, uciData);
			const view = instantiate(path.join(viewDir, file), env);
			const said = text(await view.render(await view.load()));
			check(file + ': fw4 stopped, the page says the firewall is down',
				said.includes('The firewall is down (firewall4 is stopped)'), said);
		}
	}

	// Behind a carrier's NAT: what STUN found and why new mappings are refused, in the daemon's
	// words, on the settings page and in the overview box.
	{
		const why = 'New port mappings are refused: STUN found that the Internet cannot reach them.';
		const cgn = JSON.parse(JSON.stringify(replies));
		Object.assign(cgn['rupnpd/status'], {
			external_ip: '203.0.113.1', wan_ip: '100.64.0.2', new_mappings: 'refused', new_mappings_reason: why,
			stun: { server: 'stun.example.org:3478', server_address: '203.0.113.2:3478', public_ip: '203.0.113.1',
				reachability: 'address-dependent', reason: 'The carrier\'s NAT only lets in traffic from addresses this router has sent to.',
				failures: 0, sent: 11, last_check: 125, next_check: 475 }
		});
		const env = makeEnv(cgn, uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		const t = text(await view.render(await view.load()));
		check('STUN: the public and the WAN address', t.includes('203.0.113.1') && t.includes('100.64.0.2'), t);
		check('STUN: reachability in words', t.includes('only lets in traffic from addresses this router contacted'), t);
		check('STUN: its findings and its schedule', t.includes('The carrier\'s NAT only lets in') && t.includes('last 2m 5s ago, next in 7m 55s'), t);
		check('refused mappings: the daemon\'s reason, as a warning', t.includes('refused (see below)') && t.includes(why), t);
		const flag = findAll(await view.render(await view.load()), n => n.tag == 'cbi-map')[0].map.sections[0].options
			.find(o => o.name == 'stun_allow_filtered');
		check('stun_allow_filtered: a flag shown with STUN on', flag && flag.cls == env.form.Flag && JSON.stringify(flag.deps) == JSON.stringify([['use_stun', '1']]),
			flag && JSON.stringify(flag.deps));
		const box = instantiate(path.join(viewDir, 'status/include/80_rupnpd.js'), makeEnv(cgn, uciData));
		check('status box: refused mappings are explained', text(box.render(await box.load())).includes(why));
	}

	// Hairpin from the mapped host itself blocked by br_netfilter: the daemon's sentence, as a
	// warning; nothing when it works or hairpin is off.
	{
		const why = 'A LAN host cannot reach its own mapping through the external address while net.bridge.bridge-nf-call-iptables is 1 on bridge br-lan (other LAN hosts can)';
		for (const [hairpin_self, reason, shown] of [[false, why, true], [true, '', false], [false, 'hairpin is off', false]]) {
			const r = JSON.parse(JSON.stringify(replies));
			Object.assign(r['rupnpd/status'], { hairpin_self, hairpin_self_reason: reason });
			const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), makeEnv(r, uciData));
			const t = text(await view.render(await view.load()));
			check('hairpin_self ' + hairpin_self + ' (' + (reason || 'no reason') + '): the warning ' + (shown ? 'shown' : 'not shown'),
				t.includes('cannot reach its own mapping') == shown, t);
		}
	}

	// The settings page with the daemon not running: uhttpd finds no object `rupnpd`.
	{
		const gone = { rpcError: -32000, message: 'Object not found' };
		const env = makeEnv({ 'rupnpd/status': gone, 'rupnpd/list': gone, 'luci/setInitAction': { result: true } }, uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		let node = null;
		try { node = await view.render(await view.load()); } catch (e) { bad('daemon not running: the page loads', e.message); }
		check('daemon not running: the page says so and shows empty tables',
			node && text(node).includes('not running') && env.log.tables[0].rows.length == 0);
		const start = node && findAll(node, n => n.tag == 'button' && text(n) == 'Start')[0];
		check('daemon not running: a Start button', !!start);
		if (start) {
			await start.attrs.click({ currentTarget: {} });
			const c = env.log.calls.find(c => c[0] == 'luci/setInitAction');
			check('Start calls luci setInitAction {name: rupnpd, action: start}',
				c && JSON.stringify(c[1]) == JSON.stringify({ name: 'rupnpd', action: 'start' }), JSON.stringify(c));
		}
	}

	// Start, stop, restart of a running service; a failing init action says so.
	{
		const env = makeEnv(Object.assign({}, replies, { 'luci/setInitAction': p => ({ result: p.action != 'restart' }) }), uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		const node = await view.render(await view.load());
		const buttons = findAll(node, n => n.tag == 'button').map(text);
		check('running: Restart and Stop buttons, no Start', buttons.includes('Restart') && buttons.includes('Stop') && !buttons.includes('Start'),
			buttons.join(','));
		for (const action of ['stop', 'restart']) {
			env.log.calls.length = 0;
			env.log.notes.length = 0;
			const b = findAll(node, n => n.tag == 'button' && text(n).toLowerCase() == action)[0];
			if (b) await b.attrs.click({ currentTarget: {} });
			const c = env.log.calls.find(c => c[0] == 'luci/setInitAction');
			check(action + ': luci setInitAction {name: rupnpd, action: ' + action + '}, then the status is read again',
				c && c[1].name == 'rupnpd' && c[1].action == action && env.log.calls.some(c => c[0] == 'rupnpd/status'));
		}
		check('a failed init action is reported', env.log.notes.length == 1 && text(env.log.notes[0][1]).includes('Could not restart'),
			JSON.stringify(env.log.notes));
	}

	// Refusals in words. The daemon answers a refused call with {"error": …} then a non-zero
	// status; rpc.js drops the data, so the page must say what the status means.
	{
		const why = { error: 'the daemon\'s own words' };
		const cases = [
			['delete', { ubus: 4, data: why }, 'Delete', 'no longer exists'],
			['delete', { rpcError: -32000, message: 'Object not found' }, 'Delete', 'not running'],
			['delete', { rpcError: -32002, message: 'Access denied' }, 'Delete', 'may not do this'],
			['set', { ubus: 13, data: why }, 'Switch off', 'could not store the change'],
			['set', { ubus: 2, data: why }, 'Switch off', 'does not know this switch'],
			['set', { ubus: 7 }, 'Switch off', 'did not answer in time']
		];
		for (const [method, reply, button, words] of cases) {
			const env = makeEnv(Object.assign({}, replies, { ['rupnpd/' + method]: reply }), uciData);
			const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
			const node = await view.render(await view.load());
			const rows = env.log.tables[0].rows;
			const b = (button == 'Delete') ? rows[0][9] : findAll(node, n => n.tag == 'button' && text(n) == button)[0];
			if (b) await b.attrs.click({ currentTarget: {} });
			const said = env.log.notes.map(n => text(n[1])).join(' | ');
			check('refused ' + method + ' (' + JSON.stringify(reply.ubus != null ? reply.ubus : reply.rpcError) + ') is explained: "' + words + '"',
				env.log.notes.length == 1 && said.includes(words) && !said.includes('daemon\'s own words'), said);
		}
		// The model itself: rpc.js with reject drops the data.
		const env = makeEnv({ 'rupnpd/delete': { ubus: 4, data: why } }, uciData, null);
		let message = '';
		await env.modules.rpc.declare({ object: 'rupnpd', method: 'delete', reject: true })().catch(e => { message = e.message; });
		check('rpc.js model: non-zero status rejects with the ubus code and without the data',
			message == 'RPC call to rupnpd/delete failed with ubus code 4: Resource not found', message);
	}

	// Hostile text: a DHCP host name, descriptions from LAN clients, device names, an unknown origin.
	{
		const evil = '<img src=x onerror=alert(1)>';
		const hostile = JSON.parse(JSON.stringify(replies));
		Object.assign(hostile['rupnpd/status'], { wan_device: evil, lan_devices: [evil], external_ip: evil, version: evil,
			wan_ip: evil, new_mappings: 'refused', new_mappings_reason: evil,
			stun: { server: evil, reachability: evil, reason: evil, last_check: 1, next_check: 2 } });
		for (const m of hostile['rupnpd/list'].mappings) Object.assign(m, { description: evil, origin: evil, remote_host: evil, proto: evil });
		hostile['rupnpd/list'].pinholes[0].proto = evil;
		hostile['rupnpd/list'].pinholes[0].origin = evil;
		hostile['luci-rpc/getHostHints'] = {
			'00:11:22:33:44:55': { name: evil, ipaddrs: ['192.168.1.10', '192.168.1.11'], ip6addrs: ['2001:db8:1::10'] }
		};
		for (const file of ['rupnpd/rupnpd.js', 'status/include/80_rupnpd.js']) {
			const env = makeEnv(hostile, uciData);
			const view = instantiate(path.join(viewDir, file), env);
			const data = await view.load();
			await view.render(data);
			const raw = env.log.html.filter(h => h.includes('<'));
			check(file + ': no hostile text reaches the page as HTML', raw.length == 0, JSON.stringify(raw.slice(0, 3)));
			check(file + ': the hostile host name is shown escaped',
				env.log.tables[0].rows.every(r => r[0] == '&#60;img src=x onerror=alert(1)&#62;'), JSON.stringify(env.log.tables[0].rows.map(r => r[0])));
		}
	}

	// The status overview box.
	{
		const env = makeEnv(replies, uciData);
		const box = instantiate(path.join(viewDir, 'status/include/80_rupnpd.js'), env);
		check('80_rupnpd.js: include with title and render()', typeof box.render == 'function' && typeof box.title == 'string');
		const node = box.render(await box.load());
		check('status box: one row per mapping', env.log.tables[0].rows.length == 2 && env.log.tables[0].rows[0][0] == 'nas');

		const off = makeEnv({}, uciData);
		const box2 = instantiate(path.join(viewDir, 'status/include/80_rupnpd.js'), off);
		check('status box: nothing when the daemon is not running', box2.render(await box2.load()) === null);
	}

	await aclChecks(acl);

	console.log('LuCI tests: ' + passed + ' passed, ' + failed + ' failed');
	process.exit(failed ? 1 : 0);
}

main().catch(e => { console.log('FAIL LuCI tests crashed: ' + (e.stack || e)); process.exit(1); });
