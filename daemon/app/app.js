// ArcLock reference client: registration, sign-in through the active liveness
// challenge, dashboard and profile, on the mobile app's API.
//
// What it promises (daemon/tests/browser.rs checks each):
// - Tokens live in this module's variables only: no cookie, no Web Storage,
//   no IndexedDB, no Cache API. Closing the tab signs out.
// - A camera frame exists as a JPEG Blob between its capture and its upload
//   to this origin (multipart, `connect-src 'self'`); the canvas it was
//   drawn on is cleared and shrunk at once. Nothing of the face is kept.
// - An expired access token is renewed through the rotation endpoint once,
//   for everyone waiting (a refresh token is single use: two parallel
//   refreshes would look like a replay and revoke the session); a refused
//   refresh signs out with a message, never a broken page.

const $ = (id) => document.getElementById(id);

/** The session, in memory only. */
const session = { access: null, refresh: null, user: null, refreshing: null };

/** What each API error code means to a person (every code the API has). */
const MESSAGES = {
  VALIDATION_ERROR: (e) => `Please check what you entered: ${e.message}`,
  UNAUTHORIZED: () => 'Your session has ended. Please sign in again.',
  VERIFICATION_FAILED: () =>
    'Sign-in refused: the camera did not show the account holder, live. ' +
    'Face the camera in good light, follow each step, and try again.',
  ACCOUNT_LOCKED: (e) =>
    `Too many failed attempts: this account is locked${e.retryAfter ? ` for about ${minutes(e.retryAfter)}` : ' for a while'}. ` +
    'Nothing you do before then can unlock it.',
  AUTH_RATE_LIMIT_EXCEEDED: () => 'Too many sign-in attempts from here. Wait a minute and try again.',
  RATE_LIMIT_EXCEEDED: () => 'Too many requests from here. Wait a moment and try again.',
  USER_EXISTS: () => 'An account with this e-mail (or one that looks just like it) already exists. Sign in instead.',
  REGISTRATION_CLOSED: () => 'This ArcLock does not take new accounts here: ask an operator to enrol you.',
  INVITE_INVALID: () =>
    'Registration needs an invitation code from an operator. Check the code (it works once, for a limited time, and may be for one address only).',
  FACE_ERROR: (e) => `The picture could not be used: ${e.message}. Centre your face in the oval, in good light.`,
  LIVENESS_POSE: (e) => `${e.message}. Follow each step as it is shown, then try again.`,
  LIVENESS_FAILED: () =>
    'The camera did not see a live face. Use this device\'s own camera in good light, not a photo or a screen.',
  LIVENESS_REQUIRED: () => 'This server asks for the liveness challenge; start again.',
  CHALLENGE_INVALID: () => 'The challenge expired or was already used. Start again: you get a new one.',
  PAYLOAD_TOO_LARGE: () => 'The pictures are too large for the server.',
  REQUEST_TIMEOUT: () => 'The upload took too long. Check the connection and try again.',
  SERVICE_UNAVAILABLE: (e) =>
    `ArcLock is temporarily unavailable (${e.detail || 'a dependency is down'}). Nothing was changed; try again shortly.`,
  NOT_FOUND: () => 'The server does not offer this; the client and the server may be different versions.',
  METHOD_NOT_ALLOWED: () => 'The server does not offer this; the client and the server may be different versions.',
  FORBIDDEN: () => 'This is not allowed.',
  NO_CAMERA: () => 'The server has no camera of its own.',
  NETWORK: () => 'Cannot reach ArcLock. Check the connection and try again.',
  SESSION_ENDED: () => 'Your session ended (it expired or was revoked). Please sign in again.',
};

const STEP_TEXT = {
  // Steps are in the coordinates of the submitted (unmirrored) pixels:
  // `left` wants the nose toward the image's left edge, which is the user's
  // own right. The preview is mirrored, so the arrow points the way the user
  // sees themselves turn.
  front: { say: 'Look straight at the camera', short: 'Straight', arrow: '', dir: '' },
  left: { say: 'Turn your head to your right', short: 'Turn right', arrow: 'to-right', dir: 'to your right' },
  right: { say: 'Turn your head to your left', short: 'Turn left', arrow: 'to-left', dir: 'to your left' },
};

/** A LIVENESS_POSE refusal in the user's terms (the API's hint is in the picture's). */
function poseMessage(err, steps) {
  const i = err.data && Number.isInteger(err.data.frame) ? err.data.frame : -1;
  const step = STEP_TEXT[steps[i]];
  if (!step) return err.readable;
  const hint = String(err.data.hint || '');
  const fix =
    hint === 'look_straight'
      ? 'look straight at the camera'
      : hint.startsWith('turn_further')
        ? `turn your head further ${step.dir}`
        : `you turned the other way; turn ${step.dir}`;
  return `Step ${i + 1} (${step.short}) did not show that pose: ${fix}. Try again; you get a new challenge.`;
}

function minutes(secs) {
  const m = Math.ceil(secs / 60);
  return m <= 1 ? 'a minute' : `${m} minutes`;
}

/** An API refusal: the envelope's code, message and detail. */
class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || 'NETWORK';
    this.detail = body.error || '';
    this.data = body.data || null;
    this.retryAfter = retryAfter;
  }
  get readable() {
    const say = MESSAGES[this.code];
    return say ? say(this) : `${this.message} (${this.code})`;
  }
}

/** One request to this origin's API; a 401 on an authenticated call renews the tokens once. */
async function call(method, path, { json, form, auth = false, retried = false } = {}) {
  const headers = { Accept: 'application/json' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  if (auth) headers.Authorization = `Bearer ${session.access}`;
  let r;
  try {
    r = await fetch(path, { method, headers, body, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  } catch {
    throw new ApiError(0, { code: 'NETWORK' });
  }
  let payload;
  try {
    payload = await r.json();
  } catch {
    payload = { success: false, code: r.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'NETWORK', message: `HTTP ${r.status}` };
  }
  if (r.status === 401 && auth && !retried && session.refresh) {
    await renew();
    return call(method, path, { json, form, auth, retried: true });
  }
  if (!r.ok || payload.success === false) {
    const retry = Number(r.headers.get('Retry-After')) || null;
    const err = new ApiError(r.status, payload, retry);
    if (auth && err.code === 'UNAUTHORIZED') {
      signedOut(MESSAGES.SESSION_ENDED());
      throw new ApiError(401, { code: 'SESSION_ENDED' });
    }
    throw err;
  }
  return payload.data;
}

/** Rotates the refresh token; one rotation at a time, shared by every waiter. */
function renew() {
  if (!session.refreshing) {
    const token = session.refresh;
    session.refreshing = (async () => {
      try {
        const data = await call('POST', '/api/auth/refresh-token', { json: { refreshToken: token } });
        keep(data.tokens);
      } catch (err) {
        if (err.status === 401 || err.status === 400) {
          // Expired, revoked, or replayed elsewhere (the whole family is gone).
          signedOut(MESSAGES.SESSION_ENDED());
          throw new ApiError(401, { code: 'SESSION_ENDED' });
        }
        throw err;
      } finally {
        session.refreshing = null;
      }
    })();
  }
  return session.refreshing;
}

function keep(tokens) {
  session.access = tokens.accessToken;
  session.refresh = tokens.refreshToken;
}

// --- screens ---------------------------------------------------------------

function show(id) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== id;
  $('nav').hidden = !session.access;
  const heading = $(id).querySelector('h2');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

function notice(text) {
  $('notice').textContent = text || '';
}

function alertText(text) {
  $('alert').textContent = text || '';
  $('alert').hidden = !text;
}

function fail(err) {
  if (err instanceof ApiError && err.code === 'SESSION_ENDED') return;
  alertText(err instanceof ApiError ? err.readable : String(err.message || err));
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

// --- camera ----------------------------------------------------------------

const camera = { stream: null, onCapture: null, timer: null };

async function openCamera(title, instruction, captureLabel, arrow = '') {
  alertText('');
  notice('');
  $('camera-title').textContent = title;
  setInstruction(instruction, arrow);
  $('capture').textContent = captureLabel;
  show('camera');
  if (!camera.stream) {
    try {
      camera.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: 'user', width: { ideal: 1280 }, height: { ideal: 960 } },
        audio: false,
      });
    } catch (err) {
      closeCamera();
      throw new Error(
        err && err.name === 'NotAllowedError'
          ? 'The camera permission was refused. Allow the camera for this page to continue.'
          : 'No camera could be opened on this device.',
      );
    }
  }
  const video = $('video');
  video.srcObject = camera.stream;
  await video.play().catch(() => {});
  $('capture').focus();
}

function closeCamera() {
  clearInterval(camera.timer);
  camera.timer = null;
  camera.onCapture = null;
  if (camera.stream) for (const t of camera.stream.getTracks()) t.stop();
  camera.stream = null;
  $('video').srcObject = null;
  $('steps').hidden = true;
  $('countdown').textContent = '';
}

function setInstruction(text, arrow) {
  $('instruction').textContent = text;
  $('arrow').className = `arrow ${arrow}`;
}

/** The current camera frame as a JPEG Blob (unmirrored); the canvas is wiped. */
async function grab() {
  const video = $('video');
  for (let i = 0; i < 50 && !video.videoWidth; i++) await new Promise((r) => setTimeout(r, 100));
  if (!video.videoWidth) throw new Error('The camera shows no picture yet.');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const g = canvas.getContext('2d');
  g.drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92));
  g.clearRect(0, 0, canvas.width, canvas.height);
  canvas.width = 0;
  canvas.height = 0;
  if (!blob) throw new Error('The frame could not be captured.');
  return blob;
}

$('capture').addEventListener('click', async () => {
  if (!camera.onCapture) return;
  const button = $('capture');
  busy(button, true);
  try {
    await camera.onCapture();
  } catch (err) {
    fail(err);
  } finally {
    busy(button, false);
  }
});

$('camera-cancel').addEventListener('click', () => {
  closeCamera();
  show(session.access ? 'dashboard' : 'welcome');
});

// --- registration ----------------------------------------------------------

$('to-register').addEventListener('click', () => {
  alertText('');
  show('register');
});
$('to-welcome').addEventListener('click', () => {
  alertText('');
  show('welcome');
});

$('register-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('reg-name').value.trim();
  const email = $('reg-email').value.trim();
  const inviteCode = $('reg-invite').value.trim();
  if (!name || !$('reg-email').checkValidity() || !email) {
    alertText('Enter your name and a valid e-mail address.');
    return;
  }
  try {
    await openCamera(
      'Your face photo',
      'Look straight at the camera with your face inside the oval',
      'Take photo and create account',
    );
  } catch (err) {
    fail(err);
    return;
  }
  camera.onCapture = async () => {
    const form = new FormData();
    form.append('name', name);
    form.append('email', email);
    if (inviteCode) form.append('inviteCode', inviteCode);
    form.append('image', await grab(), 'face.jpg');
    notice('Checking the photo…');
    try {
      const data = await call('POST', '/api/auth/register', { form });
      closeCamera();
      await signedIn(data, 'Account created. Next time, sign in with the liveness challenge.');
    } catch (err) {
      notice('');
      if (err.code === 'LIVENESS_REQUIRED') {
        const fields = inviteCode ? { name, inviteCode } : { name };
        await challenge({ email, endpoint: '/api/auth/register', fields, title: 'Confirm it is you' });
      } else {
        throw err;
      }
    }
  };
});

// --- sign-in through the liveness challenge ------------------------------

let lastAttempt = null;

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const email = $('signin-email').value.trim();
  if (!email || !$('signin-email').checkValidity()) {
    alertText('Enter a valid e-mail address.');
    return;
  }
  lastAttempt = { email, endpoint: '/api/auth/login', fields: {}, title: 'Liveness check' };
  try {
    await challenge(lastAttempt);
  } catch (err) {
    fail(err);
  }
});

/** Draws a challenge, captures one frame per step, submits them to `endpoint`. */
async function challenge({ email, endpoint, fields, title }) {
  const c = await call('POST', '/api/auth/challenge', { json: { email } });
  const frames = [];
  const list = $('steps');
  list.replaceChildren(
    ...c.steps.map((s) => {
      const li = document.createElement('li');
      li.textContent = STEP_TEXT[s].short;
      return li;
    }),
  );
  list.hidden = false;
  const say = (i) => `Step ${i + 1} of ${c.steps.length}: ${STEP_TEXT[c.steps[i]].say}`;
  const mark = (i) => {
    [...list.children].forEach((li, n) => {
      li.classList.toggle('done', n < i);
      if (n === i) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
    });
    setInstruction(say(i), STEP_TEXT[c.steps[i]].arrow);
    $('capture').textContent = `Capture step ${i + 1}`;
  };
  mark(0);
  await openCamera(title, say(0), 'Capture step 1', STEP_TEXT[c.steps[0]].arrow);
  const deadline = Date.now() + c.expiresIn * 1000;
  const tick = () => {
    const left = Math.round((deadline - Date.now()) / 1000);
    $('countdown').textContent = `${Math.max(left, 0)} s left to answer this challenge`;
    if (left <= 0) {
      closeCamera();
      refused(MESSAGES.CHALLENGE_INVALID());
    }
  };
  tick();
  camera.timer = setInterval(tick, 1000);
  camera.onCapture = async () => {
    frames.push(await grab());
    if (frames.length < c.steps.length) {
      mark(frames.length);
      return;
    }
    clearInterval(camera.timer);
    setInstruction('Checking…', '');
    const form = new FormData();
    form.append('email', email);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('challengeId', c.challengeId);
    frames.forEach((f, n) => form.append('frames', f, `frame-${n + 1}.jpg`));
    frames.length = 0;
    try {
      const data = await call('POST', endpoint, { form });
      closeCamera();
      const match = typeof data.similarity === 'number' ? ` Face match: ${data.similarity.toFixed(2)} (cosine similarity).` : '';
      await signedIn(data, `Signed in: live face confirmed.${match}`);
    } catch (err) {
      closeCamera();
      if (err instanceof ApiError && err.code === 'LIVENESS_POSE') refused(poseMessage(err, c.steps));
      else refused(err instanceof ApiError ? err.readable : String(err.message || err));
    }
  };
}

function refused(text) {
  alertText('');
  $('refused-message').textContent = text;
  show('refused');
}

$('retry').addEventListener('click', async () => {
  alertText('');
  try {
    if (lastAttempt) await challenge(lastAttempt);
    else show('welcome');
  } catch (err) {
    fail(err);
  }
});
$('refused-back').addEventListener('click', () => {
  alertText('');
  show('welcome');
});

// --- signed in -------------------------------------------------------------

async function signedIn(data, text) {
  keep(data.tokens);
  session.user = data.user;
  alertText('');
  notice('');
  $('result').textContent = text;
  await dashboard();
}

function signedOut(text) {
  closeCamera();
  session.access = null;
  session.refresh = null;
  session.user = null;
  $('delete-dialog').open && $('delete-dialog').close();
  notice(text);
  show('welcome');
}

function when(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toLocaleString();
}

function row(cells, cls) {
  const tr = document.createElement('tr');
  cells.forEach((text, i) => {
    const td = document.createElement('td');
    td.textContent = text ?? '';
    if (cls && cls[i]) td.className = cls[i];
    tr.append(td);
  });
  return tr;
}

const ACTIONS = {
  register: 'Account created',
  login: 'Sign-in',
  verify_face: 'Face check',
  refresh: 'Session renewed',
  logout: 'Sign-out',
  delete_account: 'Account deleted',
  update_profile: 'Profile changed',
};

async function dashboard() {
  show('dashboard');
  try {
    const [profile, auth, failures] = await Promise.all([
      call('GET', '/api/user/profile', { auth: true }),
      call('GET', '/api/logs/auth?limit=10', { auth: true }),
      call('GET', '/api/logs/failures?limit=10', { auth: true }),
    ]);
    session.user = profile;
    $('dashboard-title').textContent = `Welcome, ${profile.name}`;
    $('status-account').textContent =
      profile.securityStatus === 'locked'
        ? `Locked until ${when(profile.lockedUntil)} after failed attempts`
        : 'Active, no lockout';
    $('status-email').textContent = profile.email;
    $('status-since').textContent = when(profile.createdAt);
    $('activity').replaceChildren(
      ...auth.logs.map((l) =>
        row([when(l.timestamp), ACTIONS[l.action] || l.action, l.status, l.ipAddress], [null, null, l.status]),
      ),
    );
    $('failures').replaceChildren(
      ...(failures.attempts.length
        ? failures.attempts.map((a) => row([when(a.timestamp), ACTIONS[a.action] || a.action, a.reason, a.ipAddress]))
        : [row(['No failed attempts', '', '', ''])]),
    );
  } catch (err) {
    fail(err);
  }
}

$('refresh-dashboard').addEventListener('click', () => dashboard());
$('nav-dashboard').addEventListener('click', () => dashboard());

$('nav-profile').addEventListener('click', () => {
  alertText('');
  notice('');
  $('profile-name').value = session.user ? session.user.name : '';
  show('profile');
});

$('rename-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('profile-name').value.trim();
  if (!name) {
    alertText('Enter a name.');
    return;
  }
  const button = e.submitter || e.target.querySelector('button');
  busy(button, true);
  try {
    const user = await call('PUT', '/api/user/profile', { json: { name }, auth: true });
    session.user = { ...session.user, ...user };
    alertText('');
    notice(`Name saved: ${user.name}`);
  } catch (err) {
    fail(err);
  } finally {
    busy(button, false);
  }
});

$('nav-signout').addEventListener('click', async () => {
  try {
    await call('POST', '/api/auth/logout', { json: { refreshToken: session.refresh }, auth: true });
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 'SESSION_ENDED')) fail(err);
  }
  if (session.access) signedOut('Signed out.');
});

$('delete-open').addEventListener('click', () => $('delete-dialog').showModal());
$('delete-dialog').addEventListener('close', async () => {
  if ($('delete-dialog').returnValue !== 'delete') return;
  try {
    await call('DELETE', '/api/user/delete', { auth: true });
    signedOut('Your account, face template and keys were deleted.');
  } catch (err) {
    fail(err);
  }
});

show('welcome');
