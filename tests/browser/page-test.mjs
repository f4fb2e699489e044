// The status page (GET /) in Debian's chromium, driven by playwright-core,
// against the real orderpayd started by tests/browser/run (which passes
// everything in the environment). Every wait polls with a deadline; the one
// fixed window is where the test checks that nothing happens (a hidden or
// paused page sends no request), and it says so.
import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import net from 'node:net';

const env = process.env;
for (const name of ['BROWSER_WORK', 'ORIGIN', 'CLIENT_TOKEN', 'ADMIN_TOKEN', 'DAEMON_ARGS', 'DAEMON_PID_FILE',
                    'DAEMON_LOG', 'DB_PATH', 'ARTIFACTS', 'CHROMIUM']) {
    if (!env[name]) throw new Error(`${name} is not set: run this through tests/browser/run`);
}
const { chromium } = createRequire(path.join(env.BROWSER_WORK, 'package.json'))('playwright-core');

const origin = env.ORIGIN;
const clientToken = env.CLIENT_TOKEN;
const adminToken = env.ADMIN_TOKEN;
const started = Date.now();

function log(...what) {
    console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...what);
}
function fail(message) { throw new Error(message); }
function check(ok, message) { if (!ok) fail(message); }
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns something truthy; fails after timeoutMs.
async function eventually(what, fn, timeoutMs = 15000, everyMs = 100) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
            last = `got ${JSON.stringify(v)}`;
        } catch (e) {
            last = e.message;
        }
        if (Date.now() > deadline) fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
        await pause(everyMs);
    }
}

// ---- the API, from node ----------------------------------------------------
async function api(method, route, { token, body } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(origin + route, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
}
async function createOrder(customer) {
    const r = await api('POST', '/orders', {
        token: clientToken,
        body: { customer, currency: 'EUR', items: [{ sku: 'BOOK-42', quantity: 2, unit_amount: 1250 }] },
    });
    check(r.status === 202, `POST /orders answered ${r.status}: ${r.text}`);
    return r.json.id;
}
async function order(id) {
    const r = await api('GET', `/orders/${id}`, { token: clientToken });
    check(r.status === 200, `GET /orders/${id} answered ${r.status}: ${r.text}`);
    return r.json;
}

// A loopback port nothing listens on (free a moment ago): a webhook
// endpoint there fails each delivery at once, connection refused.
function closedPort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    });
}

// ---- the daemon: killed and restarted by the test; its pid in the file -----
const daemonArgs = JSON.parse(env.DAEMON_ARGS);
const daemonPid = () => Number(fs.readFileSync(env.DAEMON_PID_FILE, 'utf8').trim());
function running(pid) {
    // A killed child of the runner stays a zombie until the runner reaps it.
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
        return false;
    }
}
async function killDaemon() {
    const pid = daemonPid();
    process.kill(pid, 'SIGKILL');
    await eventually(`orderpayd (pid ${pid}) to die`, () => !running(pid), 10000);
}
async function stopDaemon() {
    const pid = daemonPid();
    process.kill(pid, 'SIGTERM');
    await eventually(`orderpayd (pid ${pid}) to stop`, () => !running(pid), 15000);
}
// extra: more arguments; keep: which "-D key=value" settings to keep.
async function startDaemon(extra, keep = () => true) {
    const out = fs.openSync(env.DAEMON_LOG, 'a');
    const [bin, ...all] = daemonArgs;
    const args = all.filter((a, i) => a === '-D' ? keep(all[i + 1]) : all[i - 1] !== '-D' || keep(a));
    const child = spawn(bin, [...args, ...extra], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    fs.writeFileSync(env.DAEMON_PID_FILE, String(child.pid));
    child.unref();  // the runner stops it (by the pid file), not node's exit
    await eventually('the restarted orderpayd to answer /health/live', async () => {
        check(running(child.pid), 'orderpayd exited at start (see its log)');
        return (await api('GET', '/health/live')).status === 200;
    }, 20000);
}

// ---- what the browser does, watched --------------------------------------
const problems = [];        // anything that fails the test at the end
let phase = 'before-token'; // which console errors are expected
const unauthenticatedUrls = new Set();
const requests = [];        // {url, path, method, at}
const failedRequests = [];  // {path, failure, at}

function noProblemsSoFar() {
    if (problems.length) fail(`the page misbehaved:\n  ${problems.join('\n  ')}`);
}

function watch(page) {
    page.on('request', (req) => {
        const url = req.url();
        if (!url.startsWith(`${origin}/`)) {
            problems.push(`a request left the daemon's origin: ${req.method()} ${url}`);
            return;
        }
        const p = url.slice(origin.length);
        requests.push({ path: p, method: req.method(), at: Date.now() });
        const auth = req.headers().authorization;
        if (p === '/' && req.resourceType() === 'document') return;
        if (!auth) {
            unauthenticatedUrls.add(url);
            if (phase !== 'before-token' && phase !== 'no-auth') problems.push(`${req.method()} ${p} was sent without the token`);
        } else if (auth !== `Bearer ${phase === 'client-token' ? clientToken : adminToken}`) {
            problems.push(`${req.method()} ${p} was sent with another Authorization header (${phase})`);
        }
    });
    page.on('response', (res) => {
        if (phase === 'no-auth' && res.status() === 401) problems.push(`${res.url()} answered 401 with auth off`);
    });
    page.on('requestfailed', (req) => {
        failedRequests.push({ path: req.url().slice(origin.length), failure: req.failure()?.errorText, at: Date.now() });
    });
    page.on('pageerror', (e) => problems.push(`uncaught exception in the page: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() !== 'error') return;
        const text = m.text();
        const url = m.location()?.url || '';
        // Chromium logs every answer >= 400 and every failed load; these are the expected ones.
        if (/status of 401/.test(text) && unauthenticatedUrls.has(url) && phase !== 'no-auth') return;
        if (/status of 403/.test(text) && phase === 'client-token') return;
        if (/status of 404/.test(text) && url === `${origin}/webhook-endpoints`) return;
        if (/^Failed to load resource: net::ERR_/.test(text) && phase === 'restart') return;
        problems.push(`console error (${phase}): ${text}${url ? ` [${url}]` : ''}`);
    });
}

const sel = {
    row: (id) => `#orders-table tr[data-order-id="${id}"]`,
    status: (id) => `#orders-table tr[data-order-id="${id}"] td.status`,
    deadLetter: (id) => `#dead-letters [data-dead-letter-id="${id}"]`,
    webhook: (id) => `#webhooks [data-webhook-id="${id}"]`,
};

async function main() {
    // The document as served: one <style>, one <script>, no inline handlers or
    // style attributes, and a policy whose hashes are those of its two blocks.
    const served = await api('GET', '/');
    check(served.status === 200, `GET / answered ${served.status}`);
    const html = served.text;
    const csp = served.headers.get('content-security-policy') || fail('GET / has no Content-Security-Policy');
    log('CSP:', csp);
    check((html.match(/<script\b/gi) || []).length === 1 && html.includes('<script>'), 'not exactly one bare <script>');
    check((html.match(/<style\b/gi) || []).length === 1 && html.includes('<style>'), 'not exactly one bare <style>');
    check(!/\son[a-z]+\s*=/i.test(html.replace(/<script>[\s\S]*<\/script>/, '')), 'an inline event handler attribute');
    check(!/\sstyle\s*=/i.test(html.replace(/<script>[\s\S]*<\/script>/, '')), 'a style="" attribute');
    check(!/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i.test(html), 'a URL of another site in the page');
    for (const [tag, directive] of [['script', 'script-src'], ['style', 'style-src']]) {
        const text = html.split(`<${tag}>`)[1].split(`</${tag}>`)[0];
        const hash = crypto.createHash('sha256').update(text, 'utf8').digest('base64');
        check(csp.includes(`${directive} 'sha256-${hash}'`), `the policy's ${directive} is not the hash of the page's <${tag}>`);
    }
    for (const d of ["default-src 'none'", "connect-src 'self'", "form-action 'none'", "frame-ancestors 'none'"]) {
        check(csp.includes(d), `the policy lacks ${d}`);
    }

    const browser = await chromium.launch({ executablePath: env.CHROMIUM, args: ['--no-sandbox'], headless: true });
    let page = null;
    try {
        const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, serviceWorkers: 'block' });
        page = await context.newPage();
        page.setDefaultTimeout(15000);
        watch(page);
        // CSP violations, as the page itself would see them.
        await page.exposeFunction('__cspViolation', (v) => problems.push(`CSP violation: ${v}`));
        await page.addInitScript(() => {
            document.addEventListener('securitypolicyviolation', (e) =>
                window.__cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} ${e.sample || ''}`));
        });

        // 1. The page asks for the token; the test types the admin token.
        log('1. loading the page');
        const res = await page.goto(`${origin}/`);
        check(res.status() === 200, `the page answered ${res.status()}`);
        await page.locator('#token-input').waitFor({ state: 'visible' });
        await page.locator('#connection[data-state="auth"]').waitFor();
        check(await page.locator('#token-input').getAttribute('type') === 'password', '#token-input is not a password field');
        // A client token is refused (403) and the page says why, asking again.
        phase = 'client-token';
        await page.fill('#token-input', clientToken);
        await page.click('#token-submit');
        await eventually('the page to explain the 403', async () =>
            /client token \(403\)/.test(await page.textContent('#auth-message')) && await page.locator('#auth').isVisible());
        phase = 'token';
        await page.fill('#token-input', adminToken);
        await page.click('#token-submit');
        await page.locator('#auth').waitFor({ state: 'hidden' });
        await page.locator('#connection[data-state="live"]').waitFor();
        await page.locator('#health[data-status="ok"]').waitFor();
        await eventually('the instance name in the header', async () =>
            (await page.textContent('#instance')) === 'browser-test');
        check((await page.textContent('#version')).trim().length > 0, 'no version shown');
        await page.locator('#health-database[data-status="ok"]').waitFor();
        await page.locator('#health-broker[data-status="ok"]').waitFor();
        await eventually('the webhooks card to say there are none', async () =>
            /No webhook endpoints\./.test(await page.textContent('#webhooks-body')));
        const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
        check(stored[0] === 0 && stored[1] === 0 && stored[2] === '', `the page stored something: ${JSON.stringify(stored)}`);
        check((await context.cookies()).length === 0, 'the page set a cookie');
        log('   token accepted, stream live, health ok');

        // 2. Orders posted from node appear, their status changing live. With
        // orders.concurrency = 1 the second waits (queued) while the first is
        // processed, so the page can see every status.
        noProblemsSoFar();
        log('2. newest orders, live');
        await page.evaluate(() => {
            window.__statusLog = [];
            const record = () => {
                for (const td of document.querySelectorAll('#orders-table tr[data-order-id] td.status')) {
                    const id = td.parentElement.getAttribute('data-order-id');
                    const status = td.getAttribute('data-status');
                    const seen = window.__statusLog.filter((e) => e.id === id);
                    if (!seen.length || seen[seen.length - 1].status !== status) {
                        window.__statusLog.push({ id, status, highlighted: td.classList.contains('changed') });
                    }
                }
            };
            new MutationObserver(record).observe(document.getElementById('orders-body'),
                { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
        });
        const first = await createOrder('first@example.com');
        const second = await createOrder('second@example.com');
        log(`   posted ${first} and ${second}`);
        await page.locator(sel.row(second)).waitFor();
        await page.locator(`${sel.status(second)}[data-status="awaiting_payment"]`).waitFor({ timeout: 30000 });
        const seen = (await page.evaluate(() => window.__statusLog)).filter((e) => e.id === second);
        log('   the page showed', seen.map((e) => e.status).join(' -> '));
        check(JSON.stringify(seen.map((e) => e.status)) === JSON.stringify(['queued', 'processing', 'awaiting_payment']),
              `the page showed ${JSON.stringify(seen)} for ${second}, not queued -> processing -> awaiting_payment`);
        check(seen.slice(1).every((e) => e.highlighted), 'a status change was not highlighted');
        check(/awaiting payment/.test(await page.textContent(sel.status(second))), 'the status cell text');
        await page.locator(`${sel.status(first)}[data-status="awaiting_payment"]`).waitFor();
        await eventually('the order counts to show 2 awaiting payment', async () =>
            (await page.textContent('#order-counts [data-status="awaiting_payment"] .count')) === '2');

        // The order looked up (a click on its id): its timeline, with the time between events.
        await page.click(`${sel.row(second)} td.id button`);
        await page.locator(`#order-detail[data-order-id="${second}"]`).waitFor();
        const events = (await order(second)).events;
        await eventually('the timeline to list every event', async () =>
            (await page.locator('#order-timeline li').count()) === events.length);
        const deltas = await page.locator('#order-timeline li .d').allTextContents();
        check(deltas[0] === '' && deltas.slice(1).every((d) => /^\+\d/.test(d)), `timeline deltas: ${deltas}`);
        check(await page.locator('#order-timeline li[data-type="step_completed"]').count() === 3, 'three steps completed');

        // 3. A real dead letter (processing cut short by SIGKILL, twice
        // counted, retry.max_attempts = 1 at the restart), replayed by a click.
        noProblemsSoFar();
        log('3. dead letter');
        const poison = await createOrder('poison@example.com');
        await eventually(`${poison} to start processing`, async () =>
            (await order(poison)).events.some((e) => e.type === 'step_started'), 15000);
        phase = 'restart';
        await killDaemon();
        log(`   killed orderpayd while ${poison} was processing`);
        await page.locator('#connection[data-state="reconnecting"]').waitFor();
        const changed = execFileSync('sqlite3', [env.DB_PATH,
            `UPDATE messages SET state = 'leased', attempts = 2, lease = 2 WHERE queue = 'order-steps' AND body LIKE '%${poison}%'; SELECT changes();`],
        { encoding: 'utf8' }).trim();
        check(changed === '1', `the UPDATE of the order's timer changed ${changed} rows, not 1`);
        // webhooks.allow_private_networks: an http:// endpoint on loopback (step 3b).
        await startDaemon(['-D', 'retry.max_attempts=1', '-D', 'webhooks.allow_private_networks=true']);
        log('   restarted with retry.max_attempts=1');
        // 3b (waited for below): a webhook endpoint on a port nothing listens
        // on, sent a test event: its delivery fails, and the card says so.
        const hookUrl = `http://127.0.0.1:${await closedPort()}/hook`;
        const hook = await api('POST', '/webhook-endpoints', { token: adminToken, body: { url: hookUrl, events: ['order.paid'] } });
        check(hook.status === 201, `POST /webhook-endpoints answered ${hook.status}: ${hook.text}`);
        const hookId = hook.json.id;
        const sent = await api('POST', `/webhook-endpoints/${hookId}/test`, { token: adminToken });
        check(sent.status === 202, `POST /webhook-endpoints/${hookId}/test answered ${sent.status}: ${sent.text}`);
        log(`   webhook endpoint ${hookId} at ${hookUrl}, test event ${sent.json.event_id} sent`);
        await eventually(`${poison} to fail`, async () => (await order(poison)).status === 'failed', 20000);
        const listed = await api('GET', '/dead-letters?limit=200', { token: adminToken });
        check(listed.status === 200, `GET /dead-letters answered ${listed.status}`);
        const dead = listed.json.dead_letters.find((d) => d.order_id === poison) || fail(`no dead letter for ${poison}`);
        log(`   ${poison} failed: dead letter ${dead.id} (${dead.reason})`);
        await page.locator('#connection[data-state="live"]').waitFor({ timeout: 30000 });
        await page.locator(sel.deadLetter(dead.id)).waitFor({ timeout: 30000 });
        // Every poller has run since the restart (the webhooks card's every 15 s).
        await page.locator('#errors').waitFor({ state: 'hidden', timeout: 30000 });
        phase = 'after-restart';
        await page.locator(`${sel.status(poison)}[data-status="failed"]`).waitFor();
        const group = page.locator('#dead-letters .dl-group', { has: page.locator(`[data-dead-letter-id="${dead.id}"]`) });
        check(await group.getAttribute('data-reason') === dead.reason, 'the dead letter is not grouped by its reason');

        // 3b. The webhook endpoint, with its failed delivery.
        const failure = await eventually('the test event\'s failed attempt in the delivery log', async () => {
            const r = await api('GET', `/webhook-endpoints/${hookId}/deliveries?limit=20`, { token: adminToken });
            check(r.status === 200, `GET deliveries answered ${r.status}: ${r.text}`);
            return r.json.deliveries.find((d) => d.event_id === sent.json.event_id && d.error);
        }, 20000);
        log(`   attempt ${failure.attempt} failed: ${failure.error}`);
        const card = page.locator(sel.webhook(hookId));
        // The card is read every 15 s.
        await page.locator(`${sel.webhook(hookId)}:not([data-failures="0"])`).waitFor({ timeout: 40000 });
        const cardText = await card.textContent();
        check(cardText.includes(hookUrl), `the webhooks card does not show the URL: ${cardText}`);
        check(await card.getAttribute('data-enabled') === 'true', 'the endpoint is not shown enabled');
        check(/\benabled\b/.test(await card.locator('.pill').textContent()), 'no "enabled" pill');
        check(/order\.paid/.test(await card.locator('.wh-events').textContent()), `the card does not show the events: ${cardText}`);
        check(/^\d+ of the last \d+ attempts? failed/.test(await card.locator('.wh-failures').textContent()),
              `the card does not count the failures: ${cardText}`);
        check(Number(await card.getAttribute('data-failures')) >= 1, 'data-failures is not a count');
        check(cardText.includes(failure.error.slice(0, 30)), `the card does not show the last error "${failure.error}": ${cardText}`);
        log('   the webhooks card shows the endpoint and its failed attempt');

        await page.evaluate(() => window.scrollTo(0, 0));  // the sticky header at the top of the picture
        await page.screenshot({ path: path.join(env.ARTIFACTS, 'status-page.png'), fullPage: true });
        log(`   screenshot: ${path.join(env.ARTIFACTS, 'status-page.png')}`);

        // "Replay all" asks first, with the count of a dry run; dismissed, nothing changes.
        let question = null;
        page.once('dialog', async (d) => { question = d.message(); await d.dismiss(); });
        await group.locator('button.replay-all').click();
        await eventually('the replay-all confirmation', () => question !== null);
        check(/^Replay 1 dead letter of queue order-steps/.test(question), `the confirmation said: ${question}`);
        await eventually('the replay-all button to be enabled again', () => group.locator('button.replay-all').isEnabled());
        check((await api('GET', `/dead-letters/${dead.id}`, { token: adminToken })).status === 200,
              'a dismissed "Replay all" replayed the dead letter');

        await page.click(`${sel.deadLetter(dead.id)} button.replay`);
        await eventually(`${poison} to reach awaiting_payment again`, async () =>
            (await order(poison)).status === 'awaiting_payment', 30000);
        const after = await order(poison);
        check(after.events.some((e) => e.type === 'status' && e.status === 'queued' && e.reason === 'replayed'),
              'no "replayed" status event');
        await page.locator(sel.deadLetter(dead.id)).waitFor({ state: 'detached', timeout: 15000 });
        check((await api('GET', `/dead-letters/${dead.id}`, { token: adminToken })).status === 404,
              'the replayed dead letter is still listed');
        await page.locator(`${sel.status(poison)}[data-status="awaiting_payment"]`).waitFor({ timeout: 15000 });
        await page.locator('#dead-letters-empty').waitFor();
        log('   replayed by a click: the order reached awaiting_payment, the dead letter left the page');

        // 4. A hidden tab stops the stream and the polling; visible again, both resume.
        noProblemsSoFar();
        log('4. hidden tab');
        let since = Date.now();
        await setHidden(page, true);
        await expectQuiet(page, 'hidden', since);
        since = Date.now();
        await setHidden(page, false);
        await expectLive(page, since);
        log('   hidden: stream aborted, no request; visible: live again');

        // 5. The pause button does the same, until resumed.
        noProblemsSoFar();
        log('5. pause button');
        since = Date.now();
        await page.click('#pause');
        await expectQuiet(page, 'paused', since);
        check(await page.textContent('#pause') === 'Resume', 'the pause button does not offer to resume');
        since = Date.now();
        await page.click('#pause');
        await expectLive(page, since);
        log('   paused and resumed');

        // 6. Without auth on the daemon, the page asks for no token.
        log('6. no auth');
        noProblemsSoFar();
        phase = 'restart';
        await stopDaemon();
        phase = 'no-auth';
        await startDaemon([], (a) => !/^http\.auth\./.test(a));
        check((await api('GET', '/status')).status === 200, 'the restarted daemon still wants a token');
        await page.reload();
        await page.locator('#connection[data-state="live"]').waitFor();
        await page.locator(`${sel.status(poison)}[data-status="awaiting_payment"]`).waitFor();
        await page.locator(sel.webhook(hookId)).waitFor();
        check(!(await page.locator('#auth').isVisible()), 'the page asked for a token with auth off');
        log('   live without a token');

        // 7. A daemon without webhook routes (404): the card says so, once,
        // and the page stops asking.
        noProblemsSoFar();
        log('7. no webhooks (404)');
        let asked = 0;
        await page.route(`${origin}/webhook-endpoints`, (route) => {
            asked++;
            route.fulfill({
                status: 404, contentType: 'application/problem+json',
                body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no route' }),
            });
        });
        await page.reload();
        await page.locator('#connection[data-state="live"]').waitFor();
        await page.locator('#webhooks-unavailable').waitFor();
        check(/not available in this version/.test(await page.textContent('#webhooks')), 'webhooks section text');
        check(asked === 1, `GET /webhook-endpoints was asked ${asked} times`);
        await page.unroute(`${origin}/webhook-endpoints`);
        log('   "not available in this version"');

        noProblemsSoFar();
        await context.close();
    } catch (e) {
        if (page) await page.screenshot({ path: path.join(env.ARTIFACTS, 'failure.png'), fullPage: true }).catch(() => {});
        throw e;
    } finally {
        await browser.close();
    }
    noProblemsSoFar();
}

// document.hidden emulated: headless chromium keeps every page visible, and
// no DevTools command makes it hidden; so the test overrides the two
// properties the page reads and fires the event a real tab switch fires.
async function setHidden(page, hidden) {
    await page.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
}

async function expectQuiet(page, state, since) {
    await page.locator(`#connection[data-state="${state}"]`).waitFor();
    await eventually('the stream request to be aborted', () =>
        failedRequests.some((f) => f.path === '/status/stream' && f.at >= since), 5000);
    // The one fixed window: nothing may be requested while quiet (the page
    // polls /orders every second, so 3 s would see three requests).
    const from = Date.now();
    await pause(3000);
    const sent = requests.filter((r) => r.at >= from).map((r) => `${r.method} ${r.path}`);
    check(sent.length === 0, `the ${state} page sent ${sent.join(', ')}`);
}

async function expectLive(page, since) {
    await page.locator('#connection[data-state="live"]').waitFor();
    await eventually('a new stream and a new poll of /orders', () =>
        requests.some((r) => r.path === '/status/stream' && r.at >= since) &&
        requests.some((r) => r.path.startsWith('/orders?') && r.at >= since), 5000);
}

main().then(() => {
    log('status page: ok');
    process.exit(0);
}, (e) => {
    log(`FAILED: ${e.stack || e}`);
    process.exit(1);
});
